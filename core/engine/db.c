/*
 * db.c -- the engine front: open and recovery, the write path, point reads,
 * snapshot iterators, the background thread, flush/compact requests, stats.
 *
 * Write path: a writer takes e->mu, makes room (freezing a full memtable
 * and rotating the commit log with it, or waiting when flushes/compaction
 * are behind), assigns consecutive seqnos, inserts into the active memtable,
 * queues the batch on the log (which copies it) and publishes the new
 * last_seq -- all under mu, so log order equals seqno order and a batch
 * becomes visible all at once.  The log's writer thread then makes it
 * durable and runs the caller's completion; blocking writes wait for it.
 * Nothing under mu touches the disk.
 *
 * Each memtable has its own log segment, so once a memtable is in a table
 * every segment before the next unflushed one can be deleted.
 *
 * Recovery: the MANIFEST lists the tables; segments from its log_number on
 * are replayed into memtables and flushed to L0 before the engine opens,
 * after which a fresh segment starts.  Tables the manifest does not list
 * (a flush or compaction cut short by a crash) are deleted.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "batch.h"
#include "db_impl.h"
#include "wal_format.h"
#include "ikey.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"

void moor_engine_opts_default(moor_engine_opts_t *o)
{
    memset(o, 0, sizeof(*o));
    o->create_if_missing = 1;
    o->sync_mode = MOOR_SYNC_INTERVAL;
    o->sync_interval_ms = 10;
    o->memtable_bytes = 64u << 20;
    o->max_frozen = 2;
    o->cache_bytes = 64u << 20;
    o->block_size = 4096;
    o->compression_level = 3;
    o->bloom_bits = 10;
    o->table_bytes = 8u << 20;
    o->l0_compact = 4;
    o->l0_slowdown = 12;
    o->l0_stop = 20;
    o->level1_bytes = 64u << 20;
    o->tombstone_grace_ms = 10ull * 24 * 3600 * 1000;
    o->key_max = 64u << 10;
    o->value_max = 16u << 20;
}

static int opts_check(const moor_engine_opts_t *o)
{
#define CHECK(cond, ...)                                \
    do {                                                \
        if (!(cond))                                    \
            return moor_diag(MOOR_EINVAL, __VA_ARGS__); \
    } while (0)
    CHECK(o->sync_mode >= MOOR_SYNC_NONE && o->sync_mode <= MOOR_SYNC_ALWAYS,
          "sync_mode must be none, interval or always");
    CHECK(o->memtable_bytes >= 4096, "memtable_bytes must be at least 4096");
    CHECK(o->max_frozen >= 1 && o->max_frozen <= MOOR_FROZEN_MAX, "max_frozen must be within 1..%d",
          MOOR_FROZEN_MAX);
    CHECK(o->block_size >= 256 && o->block_size <= (1u << 20),
          "block_size must be within 256..1048576");
    CHECK(o->compression_level >= 0 && o->compression_level <= 22,
          "compression_level must be within 0..22");
    CHECK(o->bloom_bits <= 64, "bloom_bits must be within 0..64");
    CHECK(o->table_bytes >= 4096, "table_bytes must be at least 4096");
    CHECK(o->l0_compact >= 1 && o->l0_slowdown >= o->l0_compact && o->l0_stop >= o->l0_slowdown,
          "need 1 <= l0_compact <= l0_slowdown <= l0_stop");
    CHECK(o->level1_bytes >= 4096, "level1_bytes must be at least 4096");
    CHECK(o->key_max >= 1 && o->key_max <= (1u << 20), "key_max must be within 1..1048576");
    CHECK(o->value_max <= (512u << 20), "value_max must be at most 512 MiB");
    CHECK(o->wal_recovery == MOOR_WAL_RECOVERY_KEEP || o->wal_recovery == MOOR_WAL_RECOVERY_STOP,
          "wal_recovery must be keep or stop");
#undef CHECK
    return 0;
}

uint64_t moor_db_new_file_number(struct moor_engine *e)
{
    uint64_t n;

    pthread_mutex_lock(&e->mu);
    n = e->next_file++;
    pthread_mutex_unlock(&e->mu);
    return n;
}

static void set_bg_error(struct moor_engine *e, int rc)
{
    /* REQUIRES: e->mu held. */
    if (!e->bg_error) {
        e->bg_error = rc;
        moor_log_error("engine %s: background error, now read-only: %s (%s)", e->dir,
                       moor_err_name(rc), moor_diag_msg(rc));
    }
    pthread_cond_broadcast(&e->cv);
}

/* ---- files in the directory ---------------------------------------------- */

enum { FILE_OTHER, FILE_WAL, FILE_TABLE };

static int file_kind(const char *name, uint64_t *num)
{
    unsigned long long n;
    int used = 0;

    if (sscanf(name, "wal-%16llu.log%n", &n, &used) == 1 && name[used] == '\0' && used == 24) {
        *num = n;
        return FILE_WAL;
    }
    if (sscanf(name, "%16llu.sst%n", &n, &used) == 1 && name[used] == '\0' && used == 20) {
        *num = n;
        return FILE_TABLE;
    }
    return FILE_OTHER;
}

void moor_db_delete_old_logs(struct moor_engine *e, uint64_t log_number)
{
    DIR *d;
    struct dirent *de;
    uint64_t n;

    /* A checkpoint copying segments keeps them until the next flush. */
    pthread_mutex_lock(&e->mu);
    if (e->ckpt_running && e->ckpt_keep_log < log_number)
        log_number = e->ckpt_keep_log;
    pthread_mutex_unlock(&e->mu);
    d = opendir(e->dir);

    while (d && (de = readdir(d))) {
        if (file_kind(de->d_name, &n) == FILE_WAL && n < log_number) {
            char path[4096];
            snprintf(path, sizeof(path), "%s/%s", e->dir, de->d_name);
            if (unlink(path) != 0)
                moor_log_warn("cannot delete old log %s: %m", path);
        }
    }
    if (d)
        closedir(d);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Lists the segments to replay (>= log_number, sorted), deletes tables the
 * version does not know, and raises next_file past every number in use. */
static int scan_dir(struct moor_engine *e, uint64_t log_number, uint64_t **segs, size_t *nsegs)
{
    DIR *d = opendir(e->dir);
    struct dirent *de;
    uint64_t n, *arr = NULL;
    size_t k = 0, cap = 0;

    *segs = NULL;
    *nsegs = 0;
    if (!d)
        return moor_diag(-errno, "cannot list %s: %m", e->dir);
    while ((de = readdir(d))) {
        int kind = file_kind(de->d_name, &n);
        if (kind == FILE_OTHER)
            continue;
        if (n >= e->next_file)
            e->next_file = n + 1;
        if (kind == FILE_TABLE) {
            int live = 0;
            for (int l = 0; l < MOOR_MAX_LEVELS && !live; l++)
                for (size_t i = 0; i < e->cur->n[l] && !live; i++)
                    live = e->cur->files[l][i]->meta.number == n;
            if (!live) {
                char path[4096];
                snprintf(path, sizeof(path), "%s/%s", e->dir, de->d_name);
                moor_log_info("deleting table %s left by an unfinished flush or compaction", path);
                unlink(path);
            }
            continue;
        }
        if (n < log_number)
            continue;
        if (k == cap) {
            uint64_t *a = realloc(arr, (cap = cap ? cap * 2 : 8) * sizeof(*a));
            if (!a) {
                free(arr);
                closedir(d);
                return MOOR_ENOMEM;
            }
            arr = a;
        }
        arr[k++] = n;
    }
    closedir(d);
    if (k > 1)
        qsort(arr, k, sizeof(*arr), cmp_u64);
    *segs = arr;
    *nsegs = k;
    return 0;
}

/* ---- recovery ------------------------------------------------------------ */

typedef struct replay_ctx {
    struct moor_engine *e;
    uint64_t seq;      /* seqno of the next entry of the record being applied */
    uint64_t next_seq; /* seqno the next record should have; 0 before the first */
    uint64_t lost;     /* writes missing between records (gaps in the seqnos) */
} replay_ctx_t;

static int replay_entry(void *ud, int type, const char *key, size_t klen, char *val, size_t vlen)
{
    replay_ctx_t *rc = ud;

    return moor_memtable_add(rc->e->mem, rc->seq++, type, key, klen, val, vlen);
}

/* A memtable for the engine's writes.  Every add runs under mu (or at
 * open, before any reader), and a reader references the memtables under
 * mu (view_take), so a version nobody holds a reference to may be updated
 * in place (memtable.h). */
static moor_memtable_t *new_memtable(struct moor_engine *e)
{
    moor_memtable_t *m = moor_memtable_new_sized(e->o.memtable_bytes);

    if (m)
        moor_memtable_replace_in_place(m, 1);
    return m;
}

/* Freezes the active memtable and flushes it now (open only: no bg thread). */
static int recovery_flush(struct moor_engine *e, uint64_t log_of_mem)
{
    moor_memtable_t *fresh = new_memtable(e);

    if (!fresh)
        return MOOR_ENOMEM;
    e->frozen[0].mem = e->mem;
    e->frozen[0].log_number = log_of_mem;
    e->nfrozen = 1;
    e->mem = fresh;
    return moor_compact_flush_one(e);
}

static int replay_record(void *ud, uint64_t seq, const char *payload, size_t len)
{
    replay_ctx_t *ctx = ud;
    struct moor_engine *e = ctx->e;
    char *copy;
    int rc;

    /* moor_batch_iterate writes through val pointers only for delete
     * timestamps at write time; replay reads, but the API takes char *. */
    copy = malloc(len ? len : 1);
    if (!copy)
        return MOOR_ENOMEM;
    memcpy(copy, payload, len);
    /* Seqnos run on without a gap across records and segments (one
     * writer, in order): a gap is writes that damage took away. */
    if (ctx->next_seq && seq > ctx->next_seq)
        ctx->lost += seq - ctx->next_seq;
    ctx->seq = seq;
    rc = moor_batch_iterate(copy, len, replay_entry, ctx);
    free(copy);
    if (rc == MOOR_ECORRUPT) {
        /* The record's crc matched, so this is not a torn write: refuse to
         * guess, the operator must look. */
        return moor_diag(MOOR_ECORRUPT, "log record at seq %llu has a malformed batch",
                         (unsigned long long)seq);
    }
    if (rc)
        return rc;
    ctx->next_seq = ctx->seq;
    if (ctx->seq - 1 > e->last_seq)
        e->last_seq = ctx->seq - 1;
    if (moor_memtable_bytes(e->mem) >= e->o.memtable_bytes)
        return recovery_flush(e, e->mem_log);
    return 0;
}

/* Replays segment n (the last one when last), adding what it found to the
 * recovery counters. */
static int replay_segment(struct moor_engine *e, uint64_t n, int last, replay_ctx_t *ctx)
{
    char path[4096];
    moor_wal_replay_stats_t st;
    int flags = last ? MOOR_WAL_REPLAY_TRUNCATE : MOOR_WAL_REPLAY_SEALED;
    int rc;

    if (e->o.wal_recovery == MOOR_WAL_RECOVERY_STOP)
        flags |= MOOR_WAL_REPLAY_STOP;
    e->mem_log = n;
    moor_wal_segment_path(path, sizeof(path), e->dir, n);
    rc = moor_wal_replay(path, flags, replay_record, ctx, &st);
    if (rc == MOOR_ECORRUPT && (flags & MOOR_WAL_REPLAY_STOP))
        return moor_diag_wrap(rc, rc, "engine %s (wal_recovery = stop)", e->dir);
    if (rc)
        return rc;
    e->rec_damaged += st.damaged;
    e->rec_damaged_bytes += st.damaged_bytes;
    if (last) {
        e->rec_torn_bytes += st.dropped_bytes;
    } else if (st.dropped_bytes) { /* a sealed segment's bad tail is damage */
        e->rec_damaged++;
        e->rec_damaged_bytes += st.dropped_bytes;
    }
    return 0;
}

static int recover(struct moor_engine *e)
{
    moor_manifest_t m;
    moor_tref_t **trefs = NULL;
    uint64_t *segs = NULL;
    size_t nsegs = 0, ntrefs = 0;
    replay_ctx_t ctx = {e, 0, 0, 0};
    int rc;

    moor_manifest_init(&m);
    rc = moor_manifest_read(e->dir, &m);
    if (rc == MOOR_ENOENT) {
        rc = 0;
        m.next_file = 1;
    }
    if (rc)
        return rc;
    e->next_file = m.next_file;
    e->last_seq = m.last_seq;
    trefs = calloc(m.nfiles + 1, sizeof(*trefs));
    if (!trefs) {
        rc = MOOR_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < m.nfiles && rc == 0; i++) {
        rc = moor_tref_open(e, &m.files[i], &trefs[i]);
        ntrefs += rc == 0;
    }
    if (rc)
        goto out;
    moor_version_unref(e->cur);
    e->cur = moor_version_edit(NULL, NULL, 0, trefs, ntrefs);
    if (!e->cur) {
        rc = MOOR_ENOMEM;
        goto out;
    }
    if ((rc = scan_dir(e, m.log_number, &segs, &nsegs)))
        goto out;
    for (size_t i = 0; i < nsegs && rc == 0; i++)
        rc = replay_segment(e, segs[i], i + 1 == nsegs, &ctx);
    e->rec_lost_writes = ctx.lost;
    if (rc == 0 && e->rec_damaged)
        moor_log_error("engine %s: recovery skipped %llu damaged stretch(es) of the commit log "
                       "(%llu bytes, %llu writes known lost) and kept every valid record "
                       "after them; this node should be repaired from its replicas",
                       e->dir, (unsigned long long)e->rec_damaged,
                       (unsigned long long)e->rec_damaged_bytes,
                       (unsigned long long)e->rec_lost_writes);
out:
    for (size_t i = 0; i < ntrefs; i++)
        moor_tref_unref(trefs[i]);
    free(trefs);
    free(segs);
    moor_manifest_clear(&m);
    return rc;
}

/* Starts a fresh log segment and records in the manifest that nothing
 * older is needed, flushing what replay left in the memtable first. */
static int recovery_finish(struct moor_engine *e)
{
    moor_wal_opts_t wo = {e->o.sync_mode, e->o.sync_interval_ms};
    uint64_t replayed_log = e->mem_log;
    int rc;

    e->mem_log = e->next_file++;
    rc = moor_wal_open(e->dir, e->mem_log, &wo, &e->wal);
    if (rc)
        return rc;
    if (moor_memtable_count(e->mem) > 0)
        rc = recovery_flush(e, replayed_log);
    else
        rc = moor_version_save(e, e->cur, e->mem_log, e->last_seq, e->next_file);
    if (rc == 0)
        moor_db_delete_old_logs(e, e->mem_log);
    return rc;
}

/* ---- background thread --------------------------------------------------- */

#define BG_RETRY_NS (1000u * 1000000u)          /* retry after a full disk */
#define BG_NOSPACE_LOG_NS (60000ull * 1000000u) /* log a full disk at most this often */

static int is_nospace(int rc)
{
    return rc == MOOR_ENOSPC || rc == -EDQUOT;
}

/* With mu held: may a flush or compaction run now?  Never after a failure;
 * after a full disk, once the retry is due. */
static int bg_may_work(struct moor_engine *e)
{
    return !e->bg_error && (!e->bg_nospace || moor_clock_mono_ns() >= e->bg_retry_ns);
}

/* With mu held: the outcome of a flush or compaction (what: its name; did:
 * it wrote something; rc 0 and not did: nothing needed doing).  A full
 * disk is retried; other errors are final. */
static void bg_outcome(struct moor_engine *e, const char *what, int rc, int did)
{
    uint64_t now = moor_clock_mono_ns();

    if (is_nospace(rc)) {
        e->bg_nospace_count++;
        e->bg_retry_ns = now + BG_RETRY_NS;
        if (!e->bg_nospace &&
            (!e->bg_nospace_log_ns || now - e->bg_nospace_log_ns >= BG_NOSPACE_LOG_NS)) {
            e->bg_nospace_log_ns = now;
            e->bg_nospace_said = 1;
            moor_log_error("engine %s: %s: no space left on device (%s); retrying every second, "
                           "writes fail with ENOSPC once the memtables are full",
                           e->dir, what, moor_diag_msg(rc));
        }
        e->bg_nospace = 1;
        pthread_cond_broadcast(&e->cv);
    } else if (rc < 0) {
        set_bg_error(e, rc);
    } else if (e->bg_nospace && (did || e->nfrozen == 0)) {
        /* it wrote, or nothing waits for space any more (the compaction
         * that failed is no longer needed) */
        e->bg_nospace = 0;
        if (e->bg_nospace_said) /* said once per logged episode, not per flip */
            moor_log_info("engine %s: space is back, flushes and compactions go on", e->dir);
        e->bg_nospace_said = 0;
        pthread_cond_broadcast(&e->cv);
    }
}

/* With mu held: runs the manual compaction asked for and answers it. */
static void bg_manual(struct moor_engine *e)
{
    int rc = e->bg_error;

    if (!rc) {
        pthread_mutex_unlock(&e->mu);
        rc = moor_compact_manual(e, e->manual_lo, e->manual_lolen, e->manual_hi, e->manual_hilen,
                                 e->manual_has_lo, e->manual_has_hi);
        pthread_mutex_lock(&e->mu);
        bg_outcome(e, "compaction", rc, rc == 0);
        if (rc == 0 && e->bg_error)
            rc = e->bg_error;
    }
    e->manual_status = rc;
    e->manual_pending = 0;
    e->manual_done = 1;
    pthread_cond_broadcast(&e->cv);
}

/* With mu held: sleeps until asked for work, or until a retry after a full
 * disk is due. */
static void bg_sleep(struct moor_engine *e)
{
    struct timespec ts;
    uint64_t wait_ns;

    if (!e->bg_nospace || e->bg_error) {
        pthread_cond_wait(&e->bg_cv, &e->mu);
        return;
    }
    /* bg_cv waits on the realtime clock (pthread default) */
    wait_ns = e->bg_retry_ns > moor_clock_mono_ns() ? e->bg_retry_ns - moor_clock_mono_ns() : 0;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)(wait_ns / 1000000000u);
    ts.tv_nsec += (long)(wait_ns % 1000000000u);
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_cond_timedwait(&e->bg_cv, &e->mu, &ts);
}

static void *bg_main(void *arg)
{
    struct moor_engine *e = arg;
    int rc;

    pthread_mutex_lock(&e->mu);
    for (;;) {
        if (e->closing)
            break;
        if (e->nfrozen > 0 && bg_may_work(e)) {
            pthread_mutex_unlock(&e->mu);
            rc = moor_compact_flush_one(e);
            pthread_mutex_lock(&e->mu);
            bg_outcome(e, "flush", rc, rc == 0);
            continue;
        }
        if (e->manual_pending) {
            bg_manual(e);
            continue;
        }
        if (bg_may_work(e)) {
            pthread_mutex_unlock(&e->mu);
            rc = moor_compact_auto(e);
            pthread_mutex_lock(&e->mu);
            bg_outcome(e, "compaction", rc < 0 ? rc : 0, rc > 0);
            if (rc > 0 || (rc < 0 && !is_nospace(rc)))
                continue;
        }
        /* Requests may have come while mu was dropped: sleep only if none. */
        if (e->closing || (e->nfrozen > 0 && bg_may_work(e)) || e->manual_pending)
            continue;
        bg_sleep(e);
    }
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

/* ---- open / close -------------------------------------------------------- */

static int lock_dir(struct moor_engine *e)
{
    char path[4096];

    snprintf(path, sizeof(path), "%s/LOCK", e->dir);
    e->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (e->lock_fd < 0)
        return moor_diag(-errno, "cannot open %s: %m", path);
    if (flock(e->lock_fd, LOCK_EX | LOCK_NB) != 0)
        return moor_diag(MOOR_EBUSY, "%s is locked by another process or handle", e->dir);
    return 0;
}

static void engine_free(struct moor_engine *e)
{
    for (unsigned i = 0; i < e->nfrozen; i++)
        moor_memtable_unref(e->frozen[i].mem);
    if (e->mem)
        moor_memtable_unref(e->mem);
    moor_version_unref(e->cur);
    if (e->cache)
        moor_cache_free(e->cache);
    if (e->lock_fd >= 0)
        close(e->lock_fd);
    for (int l = 0; l < MOOR_MAX_LEVELS; l++)
        moor_buf_free(&e->compact_ptr[l]);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv);
    pthread_cond_destroy(&e->bg_cv);
    free(e->manual_lo);
    free(e->manual_hi);
    free(e->dir);
    free(e);
}

int moor_engine_open(const char *dir, const moor_engine_opts_t *opts, moor_engine_t **out)
{
    struct moor_engine *e;
    moor_engine_opts_t defaults;
    struct stat st;
    int rc;

    *out = NULL;
    if (!opts) {
        moor_engine_opts_default(&defaults);
        opts = &defaults;
    }
    if ((rc = opts_check(opts)))
        return rc;
    if (stat(dir, &st) != 0) {
        if (errno != ENOENT || !opts->create_if_missing)
            return moor_diag(-errno, "cannot open database directory %s: %m", dir);
        if (mkdir(dir, 0755) != 0 && errno != EEXIST)
            return moor_diag(-errno, "cannot create database directory %s: %m", dir);
    } else if (!S_ISDIR(st.st_mode)) {
        return moor_diag(MOOR_EINVAL, "%s is not a directory", dir);
    }
    e = calloc(1, sizeof(*e));
    if (!e)
        return MOOR_ENOMEM;
    e->lock_fd = -1;
    e->o = *opts;
    e->clock = moor_clock_wall_ms;
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    pthread_cond_init(&e->bg_cv, NULL);
    e->dir = strdup(dir);
    e->cache = moor_cache_new(opts->cache_bytes);
    e->cur = moor_version_new();
    e->mem = new_memtable(e);
    if (!e->dir || !e->cache || !e->cur || !e->mem) {
        rc = MOOR_ENOMEM;
        goto fail;
    }
    if ((rc = lock_dir(e)) || (rc = recover(e)) || (rc = recovery_finish(e)))
        goto fail;
    if (pthread_create(&e->bg, NULL, bg_main, e) != 0) {
        rc = moor_diag(MOOR_ENOMEM, "cannot start the engine's background thread");
        goto fail;
    }
    e->bg_started = 1;
    *out = e;
    return 0;
fail:
    if (e->wal)
        moor_wal_close(e->wal);
    engine_free(e);
    return rc;
}

int moor_engine_close(moor_engine_t *e)
{
    int rc, wrc;

    pthread_mutex_lock(&e->mu);
    e->closing = 1;
    pthread_cond_broadcast(&e->bg_cv);
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&e->mu);
    if (e->bg_started)
        pthread_join(e->bg, NULL);
    wrc = moor_wal_close(e->wal);
    rc = e->bg_error ? e->bg_error : wrc;
    engine_free(e);
    return rc;
}

void moor_engine_set_clock_TEST(moor_engine_t *e, uint64_t (*fn)(void))
{
    pthread_mutex_lock(&e->mu);
    e->clock = fn ? fn : moor_clock_wall_ms;
    pthread_mutex_unlock(&e->mu);
}

/* ---- writes --------------------------------------------------------------- */

/* Freezes the active memtable and rotates the log.  REQUIRES: mu held. */
static int freeze(struct moor_engine *e)
{
    moor_memtable_t *fresh = new_memtable(e);
    uint64_t num;
    int rc;

    if (!fresh)
        return MOOR_ENOMEM;
    num = e->next_file++;
    rc = moor_wal_rotate(e->wal, num);
    if (rc) {
        moor_memtable_unref(fresh);
        return rc;
    }
    e->frozen[e->nfrozen].mem = e->mem;
    e->frozen[e->nfrozen].log_number = e->mem_log;
    e->nfrozen++;
    e->mem = fresh;
    e->mem_log = num;
    pthread_cond_signal(&e->bg_cv);
    return 0;
}

static void wait_cv(struct moor_engine *e, uint64_t *stalled_from)
{
    struct timespec ts;

    if (!*stalled_from)
        *stalled_from = moor_clock_mono_ns();
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 100 * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_cond_timedwait(&e->cv, &e->mu, &ts);
}

/* Makes sure the memtable can take a write, slowing or stalling the writer
 * when background work is behind.  force: freeze even a non-full memtable.
 * REQUIRES: mu held; may drop and retake it. */
static int make_room(struct moor_engine *e, int force)
{
    uint64_t stalled_from = 0;
    int slowed = 0, rc = 0;

    for (;;) {
        if (e->bg_error) {
            rc = moor_diag(MOOR_EFAILED, "engine %s is read-only after a background failure: %s",
                           e->dir, moor_strerror(e->bg_error));
            break;
        }
        if (e->closing) {
            rc = MOOR_ECLOSED;
            break;
        }
        if (!slowed && !force && e->cur->n[0] >= e->o.l0_slowdown) {
            /* Spread the delay over many writes instead of one long stall. */
            slowed = 1;
            pthread_mutex_unlock(&e->mu);
            usleep(1000);
            pthread_mutex_lock(&e->mu);
            atomic_fetch_add(&e->st_stall_us, 1000);
            continue;
        }
        if (!force && moor_memtable_bytes(e->mem) < e->o.memtable_bytes)
            break;
        if (force && moor_memtable_count(e->mem) == 0)
            break;
        if (e->nfrozen >= e->o.max_frozen || e->cur->n[0] >= e->o.l0_stop) {
            /* Memory is bounded: with the disk full, waiting could last
             * forever, so the writer hears why instead. */
            if (e->bg_nospace) {
                rc = moor_diag(MOOR_ENOSPC,
                               "engine %s: the memtables are full and cannot be flushed: no "
                               "space left on device",
                               e->dir);
                break;
            }
            pthread_cond_signal(&e->bg_cv);
            wait_cv(e, &stalled_from);
            continue;
        }
        rc = freeze(e);
        break;
    }
    if (stalled_from)
        atomic_fetch_add(&e->st_stall_us, (moor_clock_mono_ns() - stalled_from) / 1000);
    return rc;
}

typedef struct check_ctx {
    struct moor_engine *e;
    uint64_t now;
} check_ctx_t;

static int check_entry(void *ud, int type, const char *key, size_t klen, char *val, size_t vlen)
{
    check_ctx_t *c = ud;

    if (klen == 0)
        return moor_diag(MOOR_EINVAL, "empty key");
    if (klen > c->e->o.key_max)
        return moor_diag(MOOR_EKEYTOOBIG, "key of %zu bytes is over the limit of %zu", klen,
                         c->e->o.key_max);
    if (type == MOOR_VT_PUT && vlen > c->e->o.value_max)
        return moor_diag(MOOR_EVALTOOBIG, "value of %zu bytes is over the limit of %zu", vlen,
                         c->e->o.value_max);
    if (type == MOOR_VT_DEL)
        moor_enc_fixed64(val, c->now);
    return 0;
}

typedef struct apply_ctx {
    moor_memtable_t *mem;
    uint64_t seq;
} apply_ctx_t;

static int apply_entry(void *ud, int type, const char *key, size_t klen, char *val, size_t vlen)
{
    apply_ctx_t *a = ud;

    return moor_memtable_add(a->mem, a->seq++, type, key, klen, val, vlen);
}

/* helping: the caller will lead the log write itself (moor_wal_help) or
 * kick the log writer later (moor_engine_kick): do not wake it now. */
static int engine_write(moor_engine_t *e, moor_batch_t *b, moor_engine_done_fn done, void *ud,
                        int helping)
{
    check_ctx_t check = {e, 0};
    apply_ctx_t apply;
    int rc;

    if (b->count == 0) {
        if (done)
            done(ud, 0);
        return 0;
    }
    pthread_mutex_lock(&e->mu);
    check.now = e->clock();
    pthread_mutex_unlock(&e->mu);
    if ((rc = moor_batch_iterate(b->rep.data, b->rep.len, check_entry, &check)))
        return rc;

    pthread_mutex_lock(&e->mu);
    /* Refused before anything is applied: a write the log cannot take
     * would only queue behind those waiting for space. */
    if (moor_wal_nospace(e->wal)) {
        rc = moor_diag(MOOR_ENOSPC, "engine %s: the commit log is out of disk space", e->dir);
        goto out;
    }
    if ((rc = make_room(e, 0)))
        goto out;
    apply.mem = e->mem;
    apply.seq = e->last_seq + 1;
    rc = moor_batch_iterate(b->rep.data, b->rep.len, apply_entry, &apply);
    if (rc == 0)
        rc = (helping ? moor_wal_append_nowake : moor_wal_append)(
            e->wal, e->last_seq + 1, b->rep.data, b->rep.len, done, ud);
    if (rc) {
        /* Entries may already be in the memtable without being logged:
         * stop taking writes rather than serve what a restart would lose. */
        set_bg_error(e, rc == MOOR_ENOMEM ? MOOR_ENOMEM : MOOR_EFAILED);
        goto out;
    }
    e->last_seq += b->count;
out:
    pthread_mutex_unlock(&e->mu);
    if (rc == 0) {
        atomic_fetch_add(&e->st_user_bytes, b->user_bytes);
        atomic_fetch_add(&e->st_wal_bytes, b->rep.len + MOOR_WAL_HEADER);
    }
    return rc;
}

int moor_engine_write_async(moor_engine_t *e, moor_batch_t *b, moor_engine_done_fn done, void *ud)
{
    return engine_write(e, b, done, ud, 0);
}

int moor_engine_write_async_deferred(moor_engine_t *e, moor_batch_t *b, moor_engine_done_fn done,
                                     void *ud)
{
    return engine_write(e, b, done, ud, 1);
}

void moor_engine_kick(moor_engine_t *e)
{
    moor_wal_kick(e->wal);
}

typedef struct waiter {
    pthread_mutex_t m;
    pthread_cond_t c;
    int done, status;
} waiter_t;

static void waiter_done(void *ud, int status)
{
    waiter_t *w = ud;

    pthread_mutex_lock(&w->m);
    w->done = 1;
    w->status = status;
    pthread_cond_signal(&w->c);
    pthread_mutex_unlock(&w->m);
}

int moor_engine_write(moor_engine_t *e, moor_batch_t *b)
{
    waiter_t w = {.done = 0, .status = 0};
    int rc;

    pthread_mutex_init(&w.m, NULL);
    pthread_cond_init(&w.c, NULL);
    rc = engine_write(e, b, waiter_done, &w, 1);
    if (rc == 0) {
        moor_wal_help(e->wal);
        pthread_mutex_lock(&w.m);
        while (!w.done)
            pthread_cond_wait(&w.c, &w.m);
        pthread_mutex_unlock(&w.m);
        rc = w.status;
        if (rc) /* the status came from the log's thread: say it here */
            moor_diag(rc, "engine %s: the commit log could not take the write: %s", e->dir,
                      moor_strerror(rc));
    }
    pthread_mutex_destroy(&w.m);
    pthread_cond_destroy(&w.c);
    return rc;
}

/* One-entry batch on the stack's behalf: puts are the hot path. */
static int write_one(moor_engine_t *e, int type, const void *key, size_t klen, const void *val,
                     size_t vlen)
{
    moor_batch_t b;
    int rc;

    memset(&b, 0, sizeof(b));
    if (moor_buf_reserve(&b.rep, MOOR_BATCH_HEADER + 21 + klen + vlen))
        return MOOR_ENOMEM;
    b.rep.len = MOOR_BATCH_HEADER;
    moor_enc_fixed32(b.rep.data, 0);
    rc = type == MOOR_VT_PUT ? moor_batch_put(&b, key, klen, val, vlen)
                             : moor_batch_delete(&b, key, klen);
    if (rc == 0)
        rc = moor_engine_write(e, &b);
    moor_buf_free(&b.rep);
    return rc;
}

int moor_engine_put(moor_engine_t *e, const void *key, size_t klen, const void *val, size_t vlen)
{
    return write_one(e, MOOR_VT_PUT, key, klen, val, vlen);
}

int moor_engine_delete(moor_engine_t *e, const void *key, size_t klen)
{
    return write_one(e, MOOR_VT_DEL, key, klen, NULL, 0);
}

/* ---- reads ------------------------------------------------------------------ */

/* What a reader pins: a consistent view at one seqno. */
typedef struct view {
    uint64_t seq;
    moor_memtable_t *mems[MOOR_FROZEN_MAX + 1]; /* newest first */
    unsigned nmems;
    moor_version_t *v;
} view_t;

static void view_take(struct moor_engine *e, view_t *vw)
{
    pthread_mutex_lock(&e->mu);
    vw->seq = e->last_seq;
    vw->nmems = 0;
    moor_memtable_ref(e->mem);
    vw->mems[vw->nmems++] = e->mem;
    for (unsigned i = e->nfrozen; i-- > 0;) {
        moor_memtable_ref(e->frozen[i].mem);
        vw->mems[vw->nmems++] = e->frozen[i].mem;
    }
    moor_version_ref(e->cur);
    vw->v = e->cur;
    pthread_mutex_unlock(&e->mu);
}

static void view_drop(view_t *vw)
{
    for (unsigned i = 0; i < vw->nmems; i++)
        moor_memtable_unref(vw->mems[i]);
    moor_version_unref(vw->v);
}

int moor_engine_get(moor_engine_t *e, const void *key, size_t klen, void **val, size_t *vlen)
{
    moor_buf_t buf = MOOR_BUF_INIT;
    const char *mv = NULL;
    size_t mlen = 0;
    int type = MOOR_VT_DEL, found = 0;
    view_t vw;

    *val = NULL;
    *vlen = 0;
    if (klen == 0)
        return moor_diag(MOOR_EINVAL, "empty key");
    view_take(e, &vw);
    for (unsigned i = 0; i < vw.nmems && !found; i++)
        found = moor_memtable_get(vw.mems[i], key, klen, vw.seq, &type, &mv, &mlen);
    if (found && type == MOOR_VT_PUT && moor_buf_append(&buf, mv, mlen))
        found = MOOR_ENOMEM;
    if (!found)
        found = moor_version_get(vw.v, key, klen, vw.seq, &buf, &type);
    view_drop(&vw);
    if (found < 0) {
        moor_buf_free(&buf);
        return found;
    }
    if (!found || type != MOOR_VT_PUT) {
        moor_buf_free(&buf);
        return MOOR_ENOTFOUND;
    }
    if (buf.len == 0 && moor_buf_reserve(&buf, 1))
        return MOOR_ENOMEM;
    *vlen = buf.len;
    *val = moor_buf_steal(&buf, NULL);
    return 0;
}

void moor_engine_free(void *p)
{
    free(p);
}

/* ---- iterators ---------------------------------------------------------- */

struct moor_engine_iter {
    moor_iiter_t *m;   /* merge of memtables and tables, all versions */
    uint64_t seq;      /* snapshot */
    moor_buf_t lo, hi; /* bounds, user keys */
    int has_lo, has_hi;
    int valid, status;
    moor_buf_t key;  /* current user key */
    const char *val; /* current value, borrowed from m */
    size_t vlen;
    moor_buf_t target; /* scratch for seeks */
};

/* Moves m to the newest visible, live version of the next user key that is
 * not `skip` (the key just returned), within the upper bound. */
static void iter_settle(moor_engine_iter_t *it, int skipping)
{
    moor_iiter_t *m = it->m;

    it->valid = 0;
    for (; m->valid; m->next(m)) {
        size_t ulen = moor_ikey_ulen(m->klen);
        if (moor_ikey_seq(m->key, m->klen) > it->seq)
            continue;
        if (skipping && moor_ukey_cmp(m->key, ulen, it->key.data, it->key.len) == 0)
            continue;
        if (it->has_hi && moor_ukey_cmp(m->key, ulen, it->hi.data, it->hi.len) >= 0)
            break;
        /* The newest visible version of a new user key: from here on, its
         * older versions are skipped whatever this one is. */
        moor_buf_reset(&it->key);
        if (moor_buf_append(&it->key, m->key, ulen)) {
            it->status = MOOR_ENOMEM;
            return;
        }
        skipping = 1;
        if (moor_ikey_type(m->key, m->klen) == MOOR_VT_DEL)
            continue;
        it->valid = 1;
        it->val = m->val;
        it->vlen = m->vlen;
        return;
    }
    if (m->status && !it->status)
        it->status = m->status;
}

moor_engine_iter_t *moor_engine_iter_new(moor_engine_t *e, const void *lo, size_t lolen,
                                         const void *hi, size_t hilen)
{
    moor_engine_iter_t *it = calloc(1, sizeof(*it));
    moor_iiter_t **kids = NULL;
    size_t n = 0, cap = 0;
    view_t vw;
    int rc = 0;

    if (!it)
        return NULL;
    it->has_lo = lo != NULL;
    it->has_hi = hi != NULL;
    if ((lo && moor_buf_append(&it->lo, lo, lolen)) || (hi && moor_buf_append(&it->hi, hi, hilen)))
        goto fail;
    view_take(e, &vw);
    it->seq = vw.seq;
    kids = malloc((vw.nmems + 16) * sizeof(*kids));
    cap = kids ? vw.nmems + 16 : 0;
    for (unsigned i = 0; kids && i < vw.nmems && rc == 0; i++) {
        kids[n] = moor_memtable_iter(vw.mems[i]);
        rc = kids[n] ? 0 : MOOR_ENOMEM;
        n += rc == 0;
    }
    if (kids && rc == 0)
        rc = moor_version_iters(vw.v, &kids, &n, &cap);
    view_drop(&vw);
    if (!kids || rc) {
        for (size_t i = 0; i < n; i++)
            moor_iiter_destroy(kids[i]);
        free(kids);
        goto fail;
    }
    it->m = moor_iiter_merge(kids, n);
    if (!it->m)
        goto fail;
    return it;
fail:
    moor_buf_free(&it->lo);
    moor_buf_free(&it->hi);
    free(it);
    return NULL;
}

void moor_engine_iter_seek(moor_engine_iter_t *it, const void *key, size_t klen)
{
    const char *k = key;

    if (it->has_lo && moor_ukey_cmp(k, klen, it->lo.data, it->lo.len) < 0)
        k = it->lo.data, klen = it->lo.len;
    moor_buf_reset(&it->target);
    if (moor_ikey_build(&it->target, k, klen, it->seq, MOOR_VT_SEEK)) {
        it->status = MOOR_ENOMEM;
        it->valid = 0;
        return;
    }
    it->m->seek(it->m, it->target.data, it->target.len);
    iter_settle(it, 0);
}

void moor_engine_iter_seek_first(moor_engine_iter_t *it)
{
    if (it->has_lo) {
        moor_engine_iter_seek(it, it->lo.data, it->lo.len);
        return;
    }
    it->m->seek_first(it->m);
    iter_settle(it, 0);
}

int moor_engine_iter_valid(const moor_engine_iter_t *it)
{
    return it->valid && !it->status;
}

void moor_engine_iter_next(moor_engine_iter_t *it)
{
    if (!it->valid)
        return;
    it->m->next(it->m);
    iter_settle(it, 1);
}

const void *moor_engine_iter_key(const moor_engine_iter_t *it, size_t *klen)
{
    *klen = it->key.len;
    return it->key.data;
}

const void *moor_engine_iter_value(const moor_engine_iter_t *it, size_t *vlen)
{
    *vlen = it->vlen;
    return it->val;
}

int moor_engine_iter_status(const moor_engine_iter_t *it)
{
    return it->status;
}

void moor_engine_iter_free(moor_engine_iter_t *it)
{
    if (!it)
        return;
    moor_iiter_destroy(it->m);
    moor_buf_free(&it->lo);
    moor_buf_free(&it->hi);
    moor_buf_free(&it->key);
    moor_buf_free(&it->target);
    free(it);
}

/* ---- flush and compaction on request --------------------------------------- */

int moor_engine_flush(moor_engine_t *e)
{
    uint64_t stalled = 0, nospace_before;
    int rc;

    pthread_mutex_lock(&e->mu);
    rc = make_room(e, 1);
    nospace_before = e->bg_nospace_count;
    e->bg_retry_ns = 0; /* asked for now: a full disk is tried again at once */
    while (rc == 0 && e->nfrozen > 0 && !e->bg_error && !e->closing) {
        if (e->bg_nospace_count != nospace_before) {
            rc = moor_diag(MOOR_ENOSPC, "engine %s: flush: no space left on device", e->dir);
            break;
        }
        pthread_cond_signal(&e->bg_cv);
        wait_cv(e, &stalled);
    }
    if (rc == 0 && e->bg_error)
        rc = moor_diag(MOOR_EFAILED, "engine %s is read-only after a background failure: %s",
                       e->dir, moor_strerror(e->bg_error));
    pthread_mutex_unlock(&e->mu);
    return rc;
}

static int dup_bound(const void *p, size_t n, char **out, size_t *outlen, int *has)
{
    *has = p != NULL;
    *outlen = n;
    *out = NULL;
    if (!p)
        return 0;
    *out = malloc(n ? n : 1);
    if (!*out)
        return MOOR_ENOMEM;
    memcpy(*out, p, n);
    return 0;
}

int moor_engine_compact_range(moor_engine_t *e, const void *lo, size_t lolen, const void *hi,
                              size_t hilen)
{
    uint64_t stalled = 0;
    int rc = moor_engine_flush(e);

    if (rc)
        return rc;
    pthread_mutex_lock(&e->mu);
    while (e->manual_pending && !e->closing) /* one manual compaction at a time */
        wait_cv(e, &stalled);
    free(e->manual_lo);
    free(e->manual_hi);
    rc = dup_bound(lo, lolen, &e->manual_lo, &e->manual_lolen, &e->manual_has_lo);
    if (rc == 0)
        rc = dup_bound(hi, hilen, &e->manual_hi, &e->manual_hilen, &e->manual_has_hi);
    if (rc == 0 && !e->closing) {
        e->manual_pending = 1;
        e->manual_done = 0;
        e->bg_retry_ns = 0; /* asked for now, even after a full disk */
        pthread_cond_signal(&e->bg_cv);
        while (!e->manual_done && !e->closing)
            wait_cv(e, &stalled);
        rc = e->manual_done ? e->manual_status : MOOR_ECLOSED;
        if (rc) /* the status came from the background thread: say it here */
            moor_diag(rc, "engine %s: compaction: %s", e->dir, moor_strerror(rc));
    }
    pthread_mutex_unlock(&e->mu);
    return rc;
}

/* ---- stats -------------------------------------------------------------------- */

static uint64_t dir_bytes(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    uint64_t sum = 0;

    while (d && (de = readdir(d))) {
        char path[4096];
        struct stat st;
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        if (de->d_name[0] != '.' && stat(path, &st) == 0 && S_ISREG(st.st_mode))
            sum += (uint64_t)st.st_size;
    }
    if (d)
        closedir(d);
    return sum;
}

void moor_engine_stats(moor_engine_t *e, moor_engine_stats_t *out)
{
    moor_cache_stats_t cs;
    moor_version_t *v;
    uint64_t written;

    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&e->mu);
    out->memtable_bytes = moor_memtable_bytes(e->mem);
    for (unsigned i = 0; i < e->nfrozen; i++)
        out->memtable_bytes += moor_memtable_bytes(e->frozen[i].mem);
    out->frozen_memtables = e->nfrozen;
    out->last_seq = e->last_seq;
    out->no_space = e->bg_nospace;
    out->read_only = e->bg_error != 0;
    v = e->cur;
    moor_version_ref(v);
    pthread_mutex_unlock(&e->mu);

    for (int l = 0; l < MOOR_MAX_LEVELS; l++) {
        out->tables[l] = (uint32_t)v->n[l];
        out->level_bytes[l] = moor_version_level_bytes(v, l);
        for (size_t i = 0; i < v->n[l]; i++)
            out->index_filter_bytes += moor_table_mem(v->files[l][i]->table);
    }
    moor_version_unref(v);
    moor_cache_stats(e->cache, &cs);
    out->cache_hits = cs.hits;
    out->cache_misses = cs.misses;
    out->cache_bytes = cs.usage;
    out->cache_capacity = cs.capacity;
    out->user_bytes_written = atomic_load(&e->st_user_bytes);
    out->wal_bytes_written = atomic_load(&e->st_wal_bytes);
    out->flush_bytes_written = atomic_load(&e->st_flush_bytes);
    out->compact_bytes_written = atomic_load(&e->st_compact_written);
    out->compact_bytes_read = atomic_load(&e->st_compact_read);
    out->flushes = atomic_load(&e->st_flushes);
    out->compactions = atomic_load(&e->st_compactions);
    out->filter_rewrites = atomic_load(&e->st_filter_rewrites);
    out->filter_drops = atomic_load(&e->st_filter_drops);
    out->stall_us = atomic_load(&e->st_stall_us);
    written = out->wal_bytes_written + out->flush_bytes_written + out->compact_bytes_written;
    out->write_amp =
        out->user_bytes_written ? (double)written / (double)out->user_bytes_written : 0.0;
    out->disk_bytes = dir_bytes(e->dir);
    out->wal_damaged = e->rec_damaged;
    out->wal_damaged_bytes = e->rec_damaged_bytes;
    out->wal_lost_writes = e->rec_lost_writes;
    out->wal_torn_bytes = e->rec_torn_bytes;
    if (moor_wal_nospace(e->wal))
        out->no_space = 1;
}
