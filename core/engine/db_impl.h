/*
 * db_impl.h -- the engine's private state, shared by db.c (open, writes,
 * reads, iterators, the background thread), version.c (table sets) and
 * compact.c (flush and compaction).  Not part of the API.
 *
 * Locking: e->mu guards every field marked [mu].  The background thread is
 * the only one that changes e->cur (the version) and writes the MANIFEST,
 * so it may build a new version and write the manifest without holding mu,
 * taking mu only to install the result.  Readers take mu briefly to pin
 * (ref) what they read: the memtables and the current version.
 */
#ifndef MOOR_ENGINE_DB_IMPL_H
#define MOOR_ENGINE_DB_IMPL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "cache.h"
#include "engine.h"
#include "iter.h"
#include "manifest.h"
#include "manifest_format.h"
#include "memtable.h"
#include "table.h"
#include "wal.h"

#define MOOR_FROZEN_MAX 8 /* hard cap on opts.max_frozen */

/* A live table: its manifest entry plus an open reader.  Ref-counted by
 * the versions that list it and by iterators; the file is deleted when
 * the last reference goes after it was marked obsolete. */
typedef struct moor_tref {
    moor_file_meta_t meta; /* level is the level it was created for */
    moor_table_t *table;
    atomic_int refs;
    atomic_int obsolete; /* 1: delete the file on the last unref */
    struct moor_engine *e;
} moor_tref_t;

/* An immutable set of tables: L0 newest first (overlapping), L1+ sorted
 * by smallest key and disjoint. */
typedef struct moor_version {
    atomic_int refs;
    size_t n[MOOR_MAX_LEVELS];
    moor_tref_t **files[MOOR_MAX_LEVELS]; /* malloc'ed arrays */
} moor_version_t;

typedef struct moor_frozen {
    moor_memtable_t *mem;
    uint64_t log_number; /* commit log segment holding its writes */
} moor_frozen_t;

struct moor_engine {
    char *dir;
    moor_engine_opts_t o;
    int lock_fd;
    moor_cache_t *cache;
    moor_wal_t *wal;
    uint64_t (*clock)(void); /* wall ms, replaceable for tests */

    pthread_mutex_t mu;
    pthread_cond_t cv;    /* signalled on any background progress */
    pthread_cond_t bg_cv; /* wakes the background thread */
    pthread_t bg;
    int bg_started;

    moor_memtable_t *mem;                  /* [mu] active memtable */
    uint64_t mem_log;                      /* [mu] its commit log segment */
    moor_frozen_t frozen[MOOR_FROZEN_MAX]; /* [mu] oldest first */
    unsigned nfrozen;                      /* [mu] */
    moor_version_t *cur;                   /* [mu] to read; written by bg only */
    uint64_t next_file;                    /* [mu] */
    uint64_t last_seq;                     /* [mu] last seqno assigned and visible */
    int bg_error;                          /* [mu] first background failure, sticky */
    int bg_nospace;                        /* [mu] the last flush/compaction found the disk
                                            * full; retried from bg_retry_ns on */
    uint64_t bg_retry_ns;                  /* [mu] monotonic; 0 = retry at once */
    uint64_t bg_nospace_count;             /* [mu] flushes/compactions that found it full */
    uint64_t bg_nospace_log_ns;            /* [mu] when that was last logged */
    int bg_nospace_said;                   /* [mu] this episode was logged */
    int closing;                           /* [mu] */
    int flush_req;                         /* [mu] a caller waits for frozen == 0 */
    int ckpt_running;                      /* [mu] a checkpoint is copying (checkpoint.c) */
    uint64_t ckpt_keep_log;                /* [mu] while ckpt_running: log segments numbered
                                            * from here on are not deleted */
    /* [mu] manual compaction request; the bg thread sets manual_done */
    int manual_pending, manual_done, manual_status;
    char *manual_lo, *manual_hi;
    size_t manual_lolen, manual_hilen;
    int manual_has_lo, manual_has_hi;
    moor_buf_t compact_ptr[MOOR_MAX_LEVELS]; /* bg only: round-robin cursor */

    /* what recovery found (written at open only) */
    uint64_t rec_damaged, rec_damaged_bytes, rec_lost_writes, rec_torn_bytes;

    /* statistics: atomics, written by whoever does the work */
    atomic_uint_fast64_t st_user_bytes, st_flush_bytes, st_compact_written, st_compact_read;
    atomic_uint_fast64_t st_flushes, st_compactions, st_stall_us, st_wal_bytes;
    atomic_uint_fast64_t st_filter_rewrites, st_filter_drops;
};

/* ===== version.c ===== */
moor_version_t *moor_version_new(void);
void moor_version_ref(moor_version_t *v);
void moor_version_unref(moor_version_t *v);
/* Copy of v with `del` removed (matched by file number) and `add` inserted
 * at their meta.level, kept in each level's order.  NULL on OOM. */
moor_version_t *moor_version_edit(const moor_version_t *v, moor_tref_t **del, size_t ndel,
                                  moor_tref_t **add, size_t nadd);
void moor_tref_ref(moor_tref_t *t);
void moor_tref_unref(moor_tref_t *t);
/* Opens the table file of meta; the tref holds one reference. */
int moor_tref_open(struct moor_engine *e, const moor_file_meta_t *meta, moor_tref_t **out);
void moor_table_path(char *out, size_t size, const char *dir, uint64_t number);

/* Newest version of ukey at or below snap_seq in the tables of v: 1 found
 * (*type, value in val), 0 absent, <0 error. */
int moor_version_get(moor_version_t *v, const char *ukey, size_t ulen, uint64_t snap_seq,
                     moor_buf_t *val, int *type);
/* Appends iterators for every table of v (L0 one per table, L1+ one
 * concatenating iterator per level) to *its (a growable array).  Each
 * pins its tables.  0 or MOOR_ENOMEM. */
int moor_version_iters(moor_version_t *v, moor_iiter_t ***its, size_t *n, size_t *cap);
uint64_t moor_version_level_bytes(const moor_version_t *v, int level);
/* Does any table of v at a level > level overlap user key ukey? */
int moor_version_deeper_has(const moor_version_t *v, int level, const char *ukey, size_t ulen);
/* Tables of level overlapping user-key range [lo, hi] (NULL = unbounded);
 * malloc'ed array of borrowed pointers in *out.  0 or MOOR_ENOMEM. */
int moor_version_overlaps(const moor_version_t *v, int level, const char *lo, size_t lolen,
                          const char *hi, size_t hilen, moor_tref_t ***out, size_t *n);
/* Writes v plus the counters to the MANIFEST. */
int moor_version_save(struct moor_engine *e, const moor_version_t *v, uint64_t log_number,
                      uint64_t last_seq, uint64_t next_file);

/* ===== compact.c (background thread only) ===== */
/* Writes the oldest frozen memtable to an L0 table and installs it. */
int moor_compact_flush_one(struct moor_engine *e);
/* Runs one automatic compaction if a level is over its target; returns 1 if
 * it did work, 0 if none was needed, <0 on error. */
int moor_compact_auto(struct moor_engine *e);
/* Compacts [lo, hi] down to the last level holding data. */
int moor_compact_manual(struct moor_engine *e, const char *lo, size_t lolen, const char *hi,
                        size_t hilen, int has_lo, int has_hi);

/* ===== db.c helpers used by compact.c ===== */
uint64_t moor_db_new_file_number(struct moor_engine *e); /* takes mu */
/* Deletes commit log segments numbered below log_number, keeping those a
 * running checkpoint copies (ckpt_keep_log; the next call deletes them).
 * Takes mu: REQUIRES it not held. */
void moor_db_delete_old_logs(struct moor_engine *e, uint64_t log_number);

#endif
