/*
 * loadstat.c -- per-interval load figures of a node (loadstat.h).
 */
#include "loadstat.h"

#include <math.h>
#include <string.h>
#include <sys/resource.h>

#include "util/err.h"

static const char *const kind_names[MOOR_LS_KINDS] = {"get", "put", "del", "call", "other"};

/* Bucket i holds latencies in (2^((i-1)/4), 2^(i/4)] µs. */
static unsigned bucket_of(uint64_t us)
{
    double b;

    if (us <= 1)
        return 0;
    b = ceil(4.0 * log2((double)us));
    return b >= MOOR_LS_BUCKETS - 1 ? MOOR_LS_BUCKETS - 1 : (unsigned)b;
}

void moor_loadstat_record(moor_loadstat_t *ls, int kind, uint64_t latency_us)
{
    if (kind < 0 || kind >= MOOR_LS_KINDS)
        kind = MOOR_LS_OTHER;
    ls->count[kind]++;
    if (kind != MOOR_LS_OTHER) /* p99 of the data calls: a slow `repair` or `info` is no load */
        ls->hist[bucket_of(latency_us)]++;
}

double moor_loadstat_p99(const uint32_t *hist)
{
    uint64_t total = 0, seen = 0, rank;

    for (unsigned i = 0; i < MOOR_LS_BUCKETS; i++)
        total += hist[i];
    if (total == 0)
        return 0.0;
    rank = (total * 99 + 99) / 100; /* ceil(0.99 * total) */
    for (unsigned i = 0; i < MOOR_LS_BUCKETS; i++) {
        seen += hist[i];
        if (seen >= rank)
            return exp2((double)i / 4.0) / 1000.0;
    }
    return exp2((double)(MOOR_LS_BUCKETS - 1) / 4.0) / 1000.0;
}

void moor_loadstat_roll(moor_loadstat_t *ls, uint64_t now_ms, uint64_t cpu_us,
                        const moor_engine_stats_t *es)
{
    if (ls->t0_ms && now_ms > ls->t0_ms) {
        double secs = (double)(now_ms - ls->t0_ms) / 1000.0;
        uint64_t hits = es->cache_hits - ls->hits0, misses = es->cache_misses - ls->misses0;
        ls->rps_total = 0;
        for (int k = 0; k < MOOR_LS_KINDS; k++) {
            ls->rps[k] = (double)ls->count[k] / secs;
            ls->rps_total += ls->rps[k];
        }
        ls->p99_ms = moor_loadstat_p99(ls->hist);
        ls->cpu_ms_per_s =
            cpu_us >= ls->cpu0_us ? (double)(cpu_us - ls->cpu0_us) / 1000.0 / secs : 0;
        ls->cache_hit_rate = hits + misses ? (double)hits / (double)(hits + misses) : 1.0;
    } else if (!ls->t0_ms) {
        ls->cache_hit_rate = 1.0;
    }
    memset(ls->count, 0, sizeof(ls->count));
    memset(ls->hist, 0, sizeof(ls->hist));
    ls->t0_ms = now_ms ? now_ms : 1;
    ls->cpu0_us = cpu_us;
    ls->hits0 = es->cache_hits;
    ls->misses0 = es->cache_misses;
}

static void pack_key(msgpack_packer *pk, const char *k)
{
    msgpack_pack_str_with_body(pk, k, strlen(k));
}

int moor_loadstat_pack(const moor_loadstat_t *ls, const moor_engine_stats_t *es,
                       uint64_t memtable_budget, msgpack_packer *pk)
{
    int rc = 0;

    rc |= msgpack_pack_map(pk, 7);
    pack_key(pk, "rps");
    rc |= msgpack_pack_map(pk, MOOR_LS_KINDS + 1);
    for (int k = 0; k < MOOR_LS_KINDS; k++) {
        pack_key(pk, kind_names[k]);
        rc |= msgpack_pack_double(pk, ls->rps[k]);
    }
    pack_key(pk, "total");
    rc |= msgpack_pack_double(pk, ls->rps_total);
    pack_key(pk, "p99_ms");
    rc |= msgpack_pack_double(pk, ls->p99_ms);
    pack_key(pk, "bytes_stored");
    rc |= msgpack_pack_uint64(pk, es->disk_bytes);
    pack_key(pk, "memtable_pressure");
    rc |= msgpack_pack_double(
        pk, memtable_budget ? (double)es->memtable_bytes / (double)memtable_budget : 0.0);
    pack_key(pk, "cache_pressure");
    rc |= msgpack_pack_double(
        pk, es->cache_capacity ? (double)es->cache_bytes / (double)es->cache_capacity : 0.0);
    pack_key(pk, "cache_hit_rate");
    rc |= msgpack_pack_double(pk, ls->cache_hit_rate);
    pack_key(pk, "cpu_ms_per_s");
    rc |= msgpack_pack_double(pk, ls->cpu_ms_per_s);
    return rc ? MOOR_ENOMEM : 0;
}

uint64_t moor_loadstat_thread_cpu_us(void)
{
    struct rusage ru;

    if (getrusage(RUSAGE_THREAD, &ru) != 0)
        return 0;
    return (uint64_t)ru.ru_utime.tv_sec * 1000000u + (uint64_t)ru.ru_utime.tv_usec +
           (uint64_t)ru.ru_stime.tv_sec * 1000000u + (uint64_t)ru.ru_stime.tv_usec;
}
