/*
 * engine.h -- Moor's single-node storage engine: the whole public API.
 *
 * An LSM tree: writes go to a commit log (group commit on a writer thread)
 * and an in-memory skiplist; full memtables are flushed to immutable,
 * zstd-compressed SSTables with Bloom filters by a background thread, which
 * also runs leveled compaction.  Reads merge the memtables and the levels,
 * newest first.  Keys and values are opaque bytes (pointer + length), keys
 * ordered by memcmp.  The engine knows nothing of clusters, clocks or Lua.
 *
 * FFI-friendly: opaque handles, plain structs of scalars for options and
 * stats, ints for errors (0 or a negative MOOR_E* code, err.h; details in
 * the calling thread's diagnostics slot).
 *
 * Threads: every function is thread-safe unless it says otherwise.
 * Ownership: the engine copies every key and value it is given; values it
 * returns are malloc'ed for the caller to free with moor_engine_free().
 */
#ifndef MOOR_ENGINE_ENGINE_H
#define MOOR_ENGINE_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "wal.h" /* enum moor_sync_mode */

typedef struct moor_engine moor_engine_t;
typedef struct moor_batch moor_batch_t;
typedef struct moor_engine_iter moor_engine_iter_t;

/* A compaction filter's verdict on one entry (moor_engine_filter_fn). */
enum moor_engine_filter_verdict {
    MOOR_ENGINE_FILTER_KEEP = 0,   /* written as it is */
    MOOR_ENGINE_FILTER_DROP = 1,   /* the key is deleted, as by moor_engine_delete long ago:
                                    * a deletion mark where a deeper level may still hold an
                                    * older version of the key, else nothing */
    MOOR_ENGINE_FILTER_REWRITE = 2 /* written with the value *nval, *nvlen instead */
};

/* Optional: decides, for the newest version of each key a compaction
 * writes (never for deletion marks, nor for flushes of the memtable),
 * whether it stays, goes or changes -- so the caller can reclaim space
 * its own format frees (expired values) without a read or a write.
 * Returns a MOOR_ENGINE_FILTER_* verdict; anything else is taken as
 * KEEP.  For REWRITE, *nval points at bytes the filter owns, valid until
 * its next call.  Called on the engine's background thread only, one
 * call at a time; it must not call into the engine.  Each entry a
 * compaction writes is shown once per compaction. */
typedef int (*moor_engine_filter_fn)(void *ud, const void *key, size_t klen, const void *val,
                                     size_t vlen, const void **nval, size_t *nvlen);

/* What recovery does with damage in the middle of the commit log (a bad
 * record with valid ones after it; a torn tail is always cut off). */
enum moor_wal_recovery {
    MOOR_WAL_RECOVERY_KEEP = 0, /* skip the damaged stretch, keep every valid record after
                                 * it, log an ERROR and count it in stats (default) */
    MOOR_WAL_RECOVERY_STOP = 1  /* refuse to open: MOOR_ECORRUPT naming file and offset */
};

typedef struct moor_engine_opts {
    int create_if_missing;       /* default 1 */
    int sync_mode;               /* enum moor_sync_mode; default MOOR_SYNC_INTERVAL */
    unsigned sync_interval_ms;   /* default 10 */
    size_t memtable_bytes;       /* freeze and flush past this; default 64 MiB */
    unsigned max_frozen;         /* memtables waiting to flush before writers stall; default 2 */
    size_t cache_bytes;          /* block cache bound; default 64 MiB */
    size_t block_size;           /* default 4096 */
    int compression_level;       /* zstd level, 0 = off; default 3 */
    unsigned bloom_bits;         /* bits per key, 0 = off; default 10 */
    size_t table_bytes;          /* target size of a compaction output; default 8 MiB */
    unsigned l0_compact;         /* L0 tables that trigger compaction; default 4 */
    unsigned l0_slowdown;        /* L0 tables at which each write sleeps 1 ms; default 12 */
    unsigned l0_stop;            /* L0 tables at which writes wait; default 20 */
    uint64_t level1_bytes;       /* L1 target size; each level is 10x; default 64 MiB */
    uint64_t tombstone_grace_ms; /* keep tombstones at least this long; default 10 days */
    size_t key_max;              /* default 64 KiB */
    size_t value_max;            /* default 16 MiB */
    int wal_recovery;            /* enum moor_wal_recovery; default MOOR_WAL_RECOVERY_KEEP */
    moor_engine_filter_fn filter; /* compaction filter; default NULL: none */
    void *filter_ud;              /* its first argument */
} moor_engine_opts_t;

/* Called once the write is durable per the sync mode (see wal.h), on the
 * engine's log writer thread; status 0 or a negative code.  Keep it short:
 * hand the result to your own thread (uv_async_send) and return. */
typedef void (*moor_engine_done_fn)(void *ud, int status);

typedef struct moor_engine_stats {
    uint64_t memtable_bytes; /* active + frozen memtables */
    uint32_t frozen_memtables;
    uint32_t tables[8];      /* tables per level (0..6); [7] unused */
    uint64_t level_bytes[8]; /* bytes per level */
    uint64_t cache_hits, cache_misses;
    uint64_t cache_bytes, cache_capacity;
    uint64_t index_filter_bytes; /* resident index and filter memory */
    uint64_t user_bytes_written; /* keys + values accepted from callers */
    uint64_t wal_bytes_written;
    uint64_t flush_bytes_written;   /* tables written by memtable flushes */
    uint64_t compact_bytes_written; /* tables written by compaction */
    uint64_t compact_bytes_read;
    double write_amp;    /* (wal + flush + compaction) / user bytes */
    uint64_t disk_bytes; /* tables + logs + manifest on disk */
    uint64_t last_seq;
    uint64_t flushes, compactions;
    uint64_t filter_rewrites, filter_drops; /* compaction filter verdicts acted on */
    uint64_t stall_us; /* time writers spent slowed or stalled */
    /* What recovery found at open (fixed until the next open).  Damage is a
     * bad stretch of the commit log with valid records after it: nonzero
     * wal_damaged means writes this node had acknowledged may be gone, and
     * its replicas should repair it. */
    uint64_t wal_damaged;       /* damaged stretches skipped (valid records after them kept) */
    uint64_t wal_damaged_bytes; /* bytes in them */
    uint64_t wal_lost_writes;   /* writes known lost in them (gaps in the seqnos) */
    uint64_t wal_torn_bytes;    /* torn tail cut off the last segment (a crash mid-write) */
    /* Health of the disk. */
    uint32_t no_space;  /* 1 while the log or a flush/compaction finds the disk
                         * full: writes may fail with MOOR_ENOSPC; clears itself */
    uint32_t read_only; /* 1 once a background failure (not a full disk) made
                         * every write fail with MOOR_EFAILED until restart */
} moor_engine_stats_t;

/* ===== API ===== */

void moor_engine_opts_default(moor_engine_opts_t *o);

/* Opens (creating if allowed) the database in dir, recovering from the
 * manifest and replaying the commit log; takes an exclusive lock on
 * dir/LOCK (MOOR_EBUSY if another process has it).  Damage in the middle
 * of the log is skipped (stats.wal_damaged) or, with
 * MOOR_WAL_RECOVERY_STOP, fails the open with MOOR_ECORRUPT.  On success
 * *out is the handle; on error *out is NULL, the diagnostic says why. */
int moor_engine_open(const char *dir, const moor_engine_opts_t *opts, moor_engine_t **out);

/* Waits for background work in progress, flushes nothing (the log has
 * everything), syncs the log, frees e.  Returns the first background error
 * seen, MOOR_ENOSPC if the disk was still too full for writes that were
 * answered MOOR_ENOSPC (they stay unwritten), or 0.  REQUIRES: no iterator
 * of e is alive. */
int moor_engine_close(moor_engine_t *e);

/* Blocking writes: return once the write is durable per the sync mode.
 * MOOR_EKEYTOOBIG / MOOR_EVALTOOBIG past the limits, MOOR_EINVAL for an
 * empty key, MOOR_EFAILED once a background error made the engine
 * read-only, MOOR_ENOSPC while the disk is full (the commit log cannot be
 * written, or the memtables are full and cannot be flushed): such a write
 * was not made durable; it may still become so once space is back, like a
 * write whose answer was lost.  Writes succeed again by themselves once
 * space is freed (the engine retries within a second); reads never stop. */
int moor_engine_put(moor_engine_t *e, const void *key, size_t klen, const void *val, size_t vlen);
int moor_engine_delete(moor_engine_t *e, const void *key, size_t klen);

/* Looks key up.  0 with *val (malloc'ed, caller frees with
 * moor_engine_free; a zero-length value is a non-NULL pointer) and *vlen;
 * MOOR_ENOTFOUND; or an error (MOOR_ECORRUPT names the table and offset). */
int moor_engine_get(moor_engine_t *e, const void *key, size_t klen, void **val, size_t *vlen);
void moor_engine_free(void *p);

/* Write batches: applied atomically (one log record, consecutive seqnos,
 * all visible together).  A batch is not thread-safe. */
moor_batch_t *moor_batch_new(void); /* NULL on OOM */
void moor_batch_free(moor_batch_t *b);
void moor_batch_clear(moor_batch_t *b);
int moor_batch_put(moor_batch_t *b, const void *key, size_t klen, const void *val,
                   size_t vlen); /* 0 or MOOR_ENOMEM */
int moor_batch_delete(moor_batch_t *b, const void *key, size_t klen);
uint32_t moor_batch_count(const moor_batch_t *b);

/* Blocking batch write (see moor_engine_put).  An empty batch is a no-op. */
int moor_engine_write(moor_engine_t *e, moor_batch_t *b);

/* Non-blocking batch write: applies b (visible to readers on return) and
 * queues it on the log; done(ud, status) runs on the log thread once it is
 * durable.  If this returns an error, done is never called and nothing was
 * applied.  May sleep briefly when compaction is behind (see l0_slowdown)
 * and wait when it is far behind (l0_stop, max_frozen), bounding memory. */
int moor_engine_write_async(moor_engine_t *e, moor_batch_t *b, moor_engine_done_fn done, void *ud);

/* moor_engine_write_async without waking the commit log's writer thread:
 * an event loop queues every write of one iteration this way and calls
 * moor_engine_kick once at the end of the iteration, so one wake-up (and
 * one write(2)) serves them all.  REQUIRES: moor_engine_kick soon after. */
int moor_engine_write_async_deferred(moor_engine_t *e, moor_batch_t *b, moor_engine_done_fn done,
                                     void *ud);
void moor_engine_kick(moor_engine_t *e);

/* Iterators see a consistent snapshot taken at creation: writes after it
 * are invisible.  Keys [lo, hi) with lo/hi NULL for unbounded.  Not
 * thread-safe (one thread per iterator).  NULL on OOM. */
moor_engine_iter_t *moor_engine_iter_new(moor_engine_t *e, const void *lo, size_t lolen,
                                         const void *hi, size_t hilen);
void moor_engine_iter_seek(moor_engine_iter_t *it, const void *key, size_t klen);
void moor_engine_iter_seek_first(moor_engine_iter_t *it);
int moor_engine_iter_valid(const moor_engine_iter_t *it);
void moor_engine_iter_next(moor_engine_iter_t *it);
/* Borrowed until the next positioning call. */
const void *moor_engine_iter_key(const moor_engine_iter_t *it, size_t *klen);
const void *moor_engine_iter_value(const moor_engine_iter_t *it, size_t *vlen);
/* 0, or the error that stopped the iteration early. */
int moor_engine_iter_status(const moor_engine_iter_t *it);
void moor_engine_iter_free(moor_engine_iter_t *it);

/* Freezes the active memtable and waits until every frozen memtable is in
 * a table.  0 or an error (MOOR_ENOSPC when a flush tried now finds the
 * disk full). */
int moor_engine_flush(moor_engine_t *e);

/* Flushes, then compacts every table overlapping [lo, hi] (NULL = unbounded)
 * down to the last level, dropping overwritten versions and tombstones past
 * their grace period.  Waits until done.  0 or an error. */
int moor_engine_compact_range(moor_engine_t *e, const void *lo, size_t lolen, const void *hi,
                              size_t hilen);

void moor_engine_stats(moor_engine_t *e, moor_engine_stats_t *out);

/* What a checkpoint wrote. */
typedef struct moor_engine_checkpoint {
    uint32_t tables;       /* tables in it (hard links, or copies across filesystems) */
    uint64_t linked_bytes; /* bytes of tables hard-linked: shared with the live data */
    uint64_t copied_bytes; /* bytes copied: the commit log not yet in a table (and any
                            * table that could not be linked) */
    uint64_t last_seq;     /* the last write in it */
    uint64_t us;           /* time taken */
} moor_engine_checkpoint_t;

/* Writes a consistent, point-in-time copy of the database into the new
 * directory dir (created here; put it on the engine's filesystem so that
 * tables can be hard-linked): links to every live table, a MANIFEST of
 * exactly those, and copies of the commit log segments not yet in a
 * table, cut after the last write made before the call.  Every write
 * acknowledged before the call is in it, none begun after it;
 * moor_engine_open(dir) recovers it like any database.  Writers are not
 * stopped; the call blocks on disk (a log sync, copies, fsyncs): never
 * call it on an event loop.  0 with *out filled, or MOOR_EEXIST (dir
 * exists), MOOR_EBUSY (another checkpoint of e runs), MOOR_ENOSPC (disk
 * full), another error; on error dir is removed. */
int moor_engine_checkpoint(moor_engine_t *e, const char *dir, moor_engine_checkpoint_t *out);

/* TEST: replaces the wall clock used for tombstone timestamps and grace.
 * fn NULL restores the real clock. */
void moor_engine_set_clock_TEST(moor_engine_t *e, uint64_t (*fn)(void));

#endif
