/*
 * bench_adapters.h -- TEST: Moor, RocksDB and LevelDB behind one table of
 * functions, for bench_engine.c (header-only, included once).
 *
 * Each open() configures its engine the same way (see bench_engine.c's
 * opening comment): commit log on, one sync flag chosen at open, Bloom 10
 * bits/key, 64 MiB block cache, 64 MiB write buffer, 4 KiB blocks, zstd
 * level 3 (RocksDB, Moor) or snappy (LevelDB, which has no zstd).
 *
 * Errors: the failing call returns -1 (or NULL) and leaves a message in the
 * calling thread's bench_err.  Threads: put/get/del may be called from
 * several threads at once (all three engines allow it); an iterator belongs
 * to one thread.
 */
#ifndef MOOR_BENCH_ADAPTERS_H
#define MOOR_BENCH_ADAPTERS_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <leveldb/c.h>
#include <rocksdb/c.h>

#include "engine/engine.h"
#include "util/err.h"

#define BENCH_CACHE_BYTES ((size_t)64 << 20)
#define BENCH_WRITE_BUFFER_BYTES ((size_t)64 << 20)
#define BENCH_BLOCK_BYTES 4096
#define BENCH_BLOOM_BITS 10
#define BENCH_ZSTD_LEVEL 3 /* ZSTD_CLEVEL_DEFAULT, what RocksDB uses when unset */
#define BENCH_ERR_LEN 256

/* Last error of the calling thread, set by the adapters. */
static __thread char bench_err[BENCH_ERR_LEN];

static void set_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void set_err(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(bench_err, sizeof bench_err, fmt, ap);
    va_end(ap);
}

typedef struct bench_stat {
    const char *name; /* static string */
    double value;
} bench_stat_t;

/* ---- the adapter interface ---------------------------------------------------
 * Every engine is driven through the same small table of functions.  put,
 * del and iter_status return 0 or -1; get returns 1 (found, *vlen set), 0
 * (absent) or -1.  On -1 (or a NULL handle) bench_err says why.  Every get
 * copies the value into malloc'ed memory and frees it, as all three C APIs
 * return copies. */

typedef struct adapter {
    const char *name;
    void *(*open)(const char *dir, int sync_each_write);
    void (*close)(void *h);
    int (*put)(void *h, const char *k, size_t kl, const char *v, size_t vl);
    int (*get)(void *h, const char *k, size_t kl, size_t *vlen);
    int (*del)(void *h, const char *k, size_t kl);
    void *(*iter_new)(void *h);
    void (*iter_seek)(void *it, const char *k, size_t kl);
    void (*iter_first)(void *it);
    int (*iter_valid)(void *it);
    void (*iter_next)(void *it);
    const char *(*iter_key)(void *it, size_t *len);
    const char *(*iter_value)(void *it, size_t *len);
    int (*iter_status)(void *it);
    void (*iter_free)(void *it);
    /* Engine-reported figures into out[0..max); returns how many.  NULL
     * when the engine reports none that the others lack. */
    int (*stats)(void *h, bench_stat_t *out, int max);
} adapter_t;

/* -- Moor (mdb_*) -- */

static void *mdb_open(const char *dir, int sync_each_write)
{
    moor_engine_opts_t o;
    moor_engine_t *e = NULL;
    int rc;

    moor_engine_opts_default(&o);
    o.create_if_missing = 1;
    o.sync_mode = sync_each_write ? MOOR_SYNC_ALWAYS : MOOR_SYNC_NONE;
    o.memtable_bytes = BENCH_WRITE_BUFFER_BYTES;
    o.cache_bytes = BENCH_CACHE_BYTES;
    o.block_size = BENCH_BLOCK_BYTES;
    o.bloom_bits = BENCH_BLOOM_BITS;
    o.compression_level = BENCH_ZSTD_LEVEL;
    rc = moor_engine_open(dir, &o, &e);
    if (rc < 0) {
        set_err("moor_engine_open(%s): %s: %s", dir, moor_err_name(rc), moor_diag_msg(rc));
        return NULL;
    }
    return e;
}

static void mdb_close(void *h)
{
    int rc = moor_engine_close(h);

    if (rc < 0)
        fprintf(stderr, "[moor] close: %s: %s\n", moor_err_name(rc), moor_diag_msg(rc));
}

static int mdb_fail(const char *what, int rc)
{
    set_err("%s: %s: %s", what, moor_err_name(rc), moor_diag_msg(rc));
    return -1;
}

static int mdb_put(void *h, const char *k, size_t kl, const char *v, size_t vl)
{
    int rc = moor_engine_put(h, k, kl, v, vl);

    return rc < 0 ? mdb_fail("moor_engine_put", rc) : 0;
}

static int mdb_get(void *h, const char *k, size_t kl, size_t *vlen)
{
    void *val = NULL;
    int rc = moor_engine_get(h, k, kl, &val, vlen);

    if (rc == MOOR_ENOTFOUND)
        return 0;
    if (rc < 0)
        return mdb_fail("moor_engine_get", rc);
    moor_engine_free(val);
    return 1;
}

static int mdb_del(void *h, const char *k, size_t kl)
{
    int rc = moor_engine_delete(h, k, kl);

    return rc < 0 ? mdb_fail("moor_engine_delete", rc) : 0;
}

static void *mdb_iter_new(void *h)
{
    void *it = moor_engine_iter_new(h, NULL, 0, NULL, 0);

    if (!it)
        set_err("moor_engine_iter_new: out of memory");
    return it;
}

static void mdb_iter_seek(void *it, const char *k, size_t kl)
{
    moor_engine_iter_seek(it, k, kl);
}

static void mdb_iter_first(void *it)
{
    moor_engine_iter_seek_first(it);
}

static int mdb_iter_valid(void *it)
{
    return moor_engine_iter_valid(it);
}

static void mdb_iter_next(void *it)
{
    moor_engine_iter_next(it);
}

static void mdb_iter_free(void *it)
{
    moor_engine_iter_free(it);
}

static const char *mdb_iter_key(void *it, size_t *len)
{
    return moor_engine_iter_key(it, len);
}

static const char *mdb_iter_value(void *it, size_t *len)
{
    return moor_engine_iter_value(it, len);
}

static int mdb_iter_status(void *it)
{
    int rc = moor_engine_iter_status(it);

    return rc < 0 ? mdb_fail("moor iterator", rc) : 0;
}

static int mdb_stats(void *h, bench_stat_t *out, int max)
{
    moor_engine_stats_t st;
    uint64_t lookups;
    int n = 0;

    moor_engine_stats(h, &st);
    lookups = st.cache_hits + st.cache_misses;
#define MDB_STAT_(what, v)                                  \
    do {                                                    \
        if (n < max)                                        \
            out[n++] = (bench_stat_t){(what), (double)(v)}; \
    } while (0)
    MDB_STAT_("write_amp", st.write_amp);
    MDB_STAT_("engine_disk_bytes", st.disk_bytes);
    MDB_STAT_("flushes", st.flushes);
    MDB_STAT_("compactions", st.compactions);
    MDB_STAT_("stall_ms", st.stall_us / 1000.0);
    MDB_STAT_("cache_hit_rate", lookups ? (double)st.cache_hits / lookups : 0.0);
#undef MDB_STAT_
    return n;
}

static const adapter_t MOOR_ADAPTER = {
    .name = "moor",
    .open = mdb_open,
    .close = mdb_close,
    .put = mdb_put,
    .get = mdb_get,
    .del = mdb_del,
    .iter_new = mdb_iter_new,
    .iter_seek = mdb_iter_seek,
    .iter_first = mdb_iter_first,
    .iter_valid = mdb_iter_valid,
    .iter_next = mdb_iter_next,
    .iter_key = mdb_iter_key,
    .iter_value = mdb_iter_value,
    .iter_status = mdb_iter_status,
    .iter_free = mdb_iter_free,
    .stats = mdb_stats,
};

/* -- RocksDB (rdb_*) -- */

typedef struct rdb {
    rocksdb_t *db;
    rocksdb_options_t *opt;
    rocksdb_cache_t *cache;
    rocksdb_writeoptions_t *wo;
    rocksdb_readoptions_t *ro;
} rdb_t;

static void rdb_close(void *h)
{
    rdb_t *r = h;

    if (r->db)
        rocksdb_close(r->db);
    if (r->wo)
        rocksdb_writeoptions_destroy(r->wo);
    if (r->ro)
        rocksdb_readoptions_destroy(r->ro);
    if (r->opt)
        rocksdb_options_destroy(r->opt);
    if (r->cache)
        rocksdb_cache_destroy(r->cache);
    free(r);
}

static void *rdb_open(const char *dir, int sync_each_write)
{
    rdb_t *r = calloc(1, sizeof *r);
    rocksdb_block_based_table_options_t *bbt;
    char *err = NULL;

    if (!r) {
        set_err("rocksdb open: out of memory");
        return NULL;
    }
    r->opt = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(r->opt, 1);
    rocksdb_options_set_write_buffer_size(r->opt, BENCH_WRITE_BUFFER_BYTES);
    rocksdb_options_set_compression(r->opt, rocksdb_zstd_compression);
    r->cache = rocksdb_cache_create_lru(BENCH_CACHE_BYTES);
    bbt = rocksdb_block_based_options_create();
    rocksdb_block_based_options_set_block_cache(bbt, r->cache);
    /* The table options take ownership of the filter policy. */
    rocksdb_block_based_options_set_filter_policy(
        bbt, rocksdb_filterpolicy_create_bloom(BENCH_BLOOM_BITS));
    rocksdb_block_based_options_set_block_size(bbt, BENCH_BLOCK_BYTES);
    rocksdb_options_set_block_based_table_factory(r->opt, bbt);
    rocksdb_block_based_options_destroy(bbt);
    r->wo = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(r->wo, (unsigned char)sync_each_write);
    r->ro = rocksdb_readoptions_create();
    r->db = rocksdb_open(r->opt, dir, &err);
    if (!r->db) {
        set_err("rocksdb_open(%s): %s", dir, err ? err : "?");
        rocksdb_free(err);
        rdb_close(r);
        return NULL;
    }
    return r;
}

static int rdb_check(const char *what, char *err)
{
    if (!err)
        return 0;
    set_err("%s: %s", what, err);
    rocksdb_free(err);
    return -1;
}

static int rdb_put(void *h, const char *k, size_t kl, const char *v, size_t vl)
{
    rdb_t *r = h;
    char *err = NULL;

    rocksdb_put(r->db, r->wo, k, kl, v, vl, &err);
    return rdb_check("rocksdb_put", err);
}

static int rdb_get(void *h, const char *k, size_t kl, size_t *vlen)
{
    rdb_t *r = h;
    char *err = NULL;
    char *val = rocksdb_get(r->db, r->ro, k, kl, vlen, &err);

    if (err)
        return rdb_check("rocksdb_get", err);
    if (!val)
        return 0;
    rocksdb_free(val);
    return 1;
}

static int rdb_del(void *h, const char *k, size_t kl)
{
    rdb_t *r = h;
    char *err = NULL;

    rocksdb_delete(r->db, r->wo, k, kl, &err);
    return rdb_check("rocksdb_delete", err);
}

static void *rdb_iter_new(void *h)
{
    rdb_t *r = h;

    return rocksdb_create_iterator(r->db, r->ro);
}

static void rdb_iter_seek(void *it, const char *k, size_t kl)
{
    rocksdb_iter_seek(it, k, kl);
}

static void rdb_iter_first(void *it)
{
    rocksdb_iter_seek_to_first(it);
}

static int rdb_iter_valid(void *it)
{
    return rocksdb_iter_valid(it);
}

static void rdb_iter_next(void *it)
{
    rocksdb_iter_next(it);
}

static void rdb_iter_free(void *it)
{
    rocksdb_iter_destroy(it);
}

static const char *rdb_iter_key(void *it, size_t *len)
{
    return rocksdb_iter_key(it, len);
}

static const char *rdb_iter_value(void *it, size_t *len)
{
    return rocksdb_iter_value(it, len);
}

static int rdb_iter_status(void *it)
{
    char *err = NULL;

    rocksdb_iter_get_error(it, &err);
    return rdb_check("rocksdb iterator", err);
}

static const adapter_t ROCKSDB_ADAPTER = {
    .name = "rocksdb",
    .open = rdb_open,
    .close = rdb_close,
    .put = rdb_put,
    .get = rdb_get,
    .del = rdb_del,
    .iter_new = rdb_iter_new,
    .iter_seek = rdb_iter_seek,
    .iter_first = rdb_iter_first,
    .iter_valid = rdb_iter_valid,
    .iter_next = rdb_iter_next,
    .iter_key = rdb_iter_key,
    .iter_value = rdb_iter_value,
    .iter_status = rdb_iter_status,
    .iter_free = rdb_iter_free,
};

/* -- LevelDB (ldb_*) -- */

typedef struct ldb {
    leveldb_t *db;
    leveldb_options_t *opt;
    leveldb_cache_t *cache;
    leveldb_filterpolicy_t *bloom; /* not owned by opt: destroyed after db */
    leveldb_writeoptions_t *wo;
    leveldb_readoptions_t *ro;
} ldb_t;

static void ldb_close(void *h)
{
    ldb_t *l = h;

    if (l->db)
        leveldb_close(l->db);
    if (l->wo)
        leveldb_writeoptions_destroy(l->wo);
    if (l->ro)
        leveldb_readoptions_destroy(l->ro);
    if (l->opt)
        leveldb_options_destroy(l->opt);
    if (l->cache)
        leveldb_cache_destroy(l->cache);
    if (l->bloom)
        leveldb_filterpolicy_destroy(l->bloom);
    free(l);
}

static void *ldb_open(const char *dir, int sync_each_write)
{
    ldb_t *l = calloc(1, sizeof *l);
    char *err = NULL;

    if (!l) {
        set_err("leveldb open: out of memory");
        return NULL;
    }
    l->opt = leveldb_options_create();
    leveldb_options_set_create_if_missing(l->opt, 1);
    leveldb_options_set_write_buffer_size(l->opt, BENCH_WRITE_BUFFER_BYTES);
    leveldb_options_set_compression(l->opt, leveldb_snappy_compression);
    leveldb_options_set_block_size(l->opt, BENCH_BLOCK_BYTES);
    l->cache = leveldb_cache_create_lru(BENCH_CACHE_BYTES);
    leveldb_options_set_cache(l->opt, l->cache);
    l->bloom = leveldb_filterpolicy_create_bloom(BENCH_BLOOM_BITS);
    leveldb_options_set_filter_policy(l->opt, l->bloom);
    l->wo = leveldb_writeoptions_create();
    leveldb_writeoptions_set_sync(l->wo, (uint8_t)sync_each_write);
    l->ro = leveldb_readoptions_create();
    l->db = leveldb_open(l->opt, dir, &err);
    if (!l->db) {
        set_err("leveldb_open(%s): %s", dir, err ? err : "?");
        leveldb_free(err);
        ldb_close(l);
        return NULL;
    }
    return l;
}

static int ldb_check(const char *what, char *err)
{
    if (!err)
        return 0;
    set_err("%s: %s", what, err);
    leveldb_free(err);
    return -1;
}

static int ldb_put(void *h, const char *k, size_t kl, const char *v, size_t vl)
{
    ldb_t *l = h;
    char *err = NULL;

    leveldb_put(l->db, l->wo, k, kl, v, vl, &err);
    return ldb_check("leveldb_put", err);
}

static int ldb_get(void *h, const char *k, size_t kl, size_t *vlen)
{
    ldb_t *l = h;
    char *err = NULL;
    char *val = leveldb_get(l->db, l->ro, k, kl, vlen, &err);

    if (err)
        return ldb_check("leveldb_get", err);
    if (!val)
        return 0;
    leveldb_free(val);
    return 1;
}

static int ldb_del(void *h, const char *k, size_t kl)
{
    ldb_t *l = h;
    char *err = NULL;

    leveldb_delete(l->db, l->wo, k, kl, &err);
    return ldb_check("leveldb_delete", err);
}

static void *ldb_iter_new(void *h)
{
    ldb_t *l = h;

    return leveldb_create_iterator(l->db, l->ro);
}

static void ldb_iter_seek(void *it, const char *k, size_t kl)
{
    leveldb_iter_seek(it, k, kl);
}

static void ldb_iter_first(void *it)
{
    leveldb_iter_seek_to_first(it);
}

static int ldb_iter_valid(void *it)
{
    return leveldb_iter_valid(it);
}

static void ldb_iter_next(void *it)
{
    leveldb_iter_next(it);
}

static void ldb_iter_free(void *it)
{
    leveldb_iter_destroy(it);
}

static const char *ldb_iter_key(void *it, size_t *len)
{
    return leveldb_iter_key(it, len);
}

static const char *ldb_iter_value(void *it, size_t *len)
{
    return leveldb_iter_value(it, len);
}

static int ldb_iter_status(void *it)
{
    char *err = NULL;

    leveldb_iter_get_error(it, &err);
    return ldb_check("leveldb iterator", err);
}

static const adapter_t LEVELDB_ADAPTER = {
    .name = "leveldb",
    .open = ldb_open,
    .close = ldb_close,
    .put = ldb_put,
    .get = ldb_get,
    .del = ldb_del,
    .iter_new = ldb_iter_new,
    .iter_seek = ldb_iter_seek,
    .iter_first = ldb_iter_first,
    .iter_valid = ldb_iter_valid,
    .iter_next = ldb_iter_next,
    .iter_key = ldb_iter_key,
    .iter_value = ldb_iter_value,
    .iter_status = ldb_iter_status,
    .iter_free = ldb_iter_free,
};

/* Every engine the bench knows, in the default run order. */
#define BENCH_NENGINES 3
static const adapter_t *const BENCH_ADAPTERS[BENCH_NENGINES] = {&MOOR_ADAPTER, &ROCKSDB_ADAPTER,
                                                                &LEVELDB_ADAPTER};

#endif
