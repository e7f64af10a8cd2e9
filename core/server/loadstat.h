/*
 * loadstat.h -- the load figures a node publishes (README "Automatic
 * scaling"): requests per second by kind, the p99 latency, and what the
 * engine and the loop thread are spending, over the last interval.
 *
 * The node records each client request as it is answered (kind and
 * latency); moor_loadstat_roll closes the interval (once a second) and
 * turns the counts into rates and a p99.  Latencies go into a histogram
 * of 4 buckets per doubling from 1 µs to about 16 s (the p99 is the upper
 * bound of its bucket: at most 19% high, never low).  Loop thread only.
 */
#ifndef MOOR_SERVER_LOADSTAT_H
#define MOOR_SERVER_LOADSTAT_H

#include <stdint.h>

#include <msgpack.h>

#include "engine/engine.h"

enum moor_ls_kind {
    MOOR_LS_GET = 0,
    MOOR_LS_PUT,
    MOOR_LS_DEL,
    MOOR_LS_CALL,
    MOOR_LS_OTHER,
    MOOR_LS_KINDS
};

#define MOOR_LS_BUCKETS 96 /* 4 per doubling: 2^(i/4) µs, up to 2^24 µs */

typedef struct moor_loadstat {
    /* the open interval */
    uint64_t count[MOOR_LS_KINDS];
    uint32_t hist[MOOR_LS_BUCKETS];
    uint64_t t0_ms;   /* when it opened (monotonic); 0 = never rolled */
    uint64_t cpu0_us; /* the loop thread's CPU time then */
    uint64_t hits0, misses0;
    /* the last closed interval */
    double rps[MOOR_LS_KINDS];
    double rps_total;
    double p99_ms;
    double cpu_ms_per_s;
    double cache_hit_rate; /* 1 when nothing was looked up */
} moor_loadstat_t;

/* ===== API ===== */

/* Records one request of kind answered after latency_us.  Can't fail. */
void moor_loadstat_record(moor_loadstat_t *ls, int kind, uint64_t latency_us);

/* Closes the interval at now_ms (monotonic), with the loop thread's CPU
 * time cpu_us and the engine's stats, and opens the next.  The first call
 * only opens one. */
void moor_loadstat_roll(moor_loadstat_t *ls, uint64_t now_ms, uint64_t cpu_us,
                        const moor_engine_stats_t *es);

/* The p99 (ms) of a histogram, 0 when empty. */
double moor_loadstat_p99(const uint32_t *hist);

/* Packs the load map: {rps = {get, put, del, call, other, total}, p99_ms,
 * bytes_stored, memtable_pressure, cache_pressure, cache_hit_rate,
 * cpu_ms_per_s}; memtable_budget is the engine's memtable size (bytes).
 * 0 or MOOR_ENOMEM. */
int moor_loadstat_pack(const moor_loadstat_t *ls, const moor_engine_stats_t *es,
                       uint64_t memtable_budget, msgpack_packer *pk);

/* The loop thread's CPU time (user + system) in µs: getrusage of the
 * calling thread. */
uint64_t moor_loadstat_thread_cpu_us(void);

#endif
