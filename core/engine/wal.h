/*
 * wal.h -- the commit log: a writer thread with group commit, and replay.
 *
 * Appending copies the record into a shared pending buffer under a mutex
 * and returns at once; the writer thread (or a blocking writer that offers
 * to lead, moor_wal_help) takes everything pending, writes
 * it with one write(2), makes it durable according to the sync mode, then
 * calls each record's completion callback in append order.  So any number
 * of appenders share one fdatasync (group commit), and a caller on an event
 * loop never blocks on disk.
 *
 * Sync modes:
 *   MOOR_SYNC_ALWAYS   callbacks run after the fdatasync that covers them
 *   MOOR_SYNC_INTERVAL callbacks run after write(2); fdatasync every
 *                      interval_ms (Cassandra's periodic mode)
 *   MOOR_SYNC_NONE     callbacks run after write(2); fdatasync only on
 *                      rotate and close
 * A failed write or fdatasync puts the log in a failed state: the pending
 * callbacks get the error and every later append returns MOOR_EFAILED
 * (after a failed fsync the page cache can no longer be trusted).
 */
#ifndef MOOR_ENGINE_WAL_H
#define MOOR_ENGINE_WAL_H

#include <stddef.h>
#include <stdint.h>

enum moor_sync_mode {
    MOOR_SYNC_NONE = 0,
    MOOR_SYNC_INTERVAL = 1,
    MOOR_SYNC_ALWAYS = 2
};

typedef struct moor_wal moor_wal_t;

/* Called on the writer thread (or a helping writer) once the record is written (and synced, in
 * ALWAYS mode).  status is 0 or a negative MOOR_E* code.  Must not call
 * back into the wal. */
typedef void (*moor_wal_done_fn)(void *ud, int status);

typedef struct moor_wal_opts {
    int sync_mode;         /* enum moor_sync_mode */
    unsigned interval_ms;  /* for MOOR_SYNC_INTERVAL; default 10 */
} moor_wal_opts_t;

typedef int (*moor_wal_replay_fn)(void *ud, uint64_t seq, const char *payload, size_t len);

typedef struct moor_wal_replay_stats {
    uint64_t records;       /* records handed to the callback */
    uint64_t valid_bytes;   /* offset just past the last good record */
    uint64_t dropped_bytes; /* bytes after it (torn tail or corruption) */
    uint64_t last_seq;      /* seqno of the last good record (0 if none) */
} moor_wal_replay_stats_t;

/* ===== API ===== */

/* Path of segment n in dir into out (size >= strlen(dir) + 32). */
void moor_wal_segment_path(char *out, size_t size, const char *dir, uint64_t n);

/* Creates segment `number` in dir (fails with MOOR_EEXIST if present),
 * writes and syncs its header, fsyncs dir, and starts the writer thread.
 * opts may be NULL (MOOR_SYNC_ALWAYS).  0 or a negative code, with a
 * diagnostic. */
int moor_wal_open(const char *dir, uint64_t number, const moor_wal_opts_t *opts,
                  moor_wal_t **out);

/* Queues one record.  Thread-safe.  On success done(ud, status) will be
 * called exactly once from the writer thread; on failure (MOOR_EFAILED,
 * MOOR_ENOMEM, MOOR_EINVAL for len > MOOR_WAL_MAX_RECORD, MOOR_ECLOSED) it
 * is never called.  done may be NULL. */
int moor_wal_append(moor_wal_t *w, uint64_t seq, const char *payload, size_t len,
                    moor_wal_done_fn done, void *ud);

/* moor_wal_append without waking the writer thread: the caller promises to
 * call moor_wal_help or moor_wal_kick soon, outside any lock a callback
 * takes. */
int moor_wal_append_nowake(moor_wal_t *w, uint64_t seq, const char *payload, size_t len,
                           moor_wal_done_fn done, void *ud);

/* Wakes the writer thread for what moor_wal_append_nowake queued (an event
 * loop appends many records per iteration and kicks once).  Thread-safe. */
void moor_wal_kick(moor_wal_t *w);

/* Group-commit leadership for blocking writers: if no thread is doing the
 * log's I/O, writes (and syncs, per mode) everything pending in the calling
 * thread and runs those callbacks here; returns 1.  Otherwise returns 0
 * and the current I/O owner or the writer thread will do it.  Blocks on
 * disk: never call it from an event-loop thread.  Thread-safe. */
int moor_wal_help(moor_wal_t *w);

/* Queues a switch to a new segment `number`: records appended before this
 * call go to the old segment, later ones to the new.  The old segment is
 * fdatasync'ed and closed by the writer.  Thread-safe.  Errors opening the
 * new segment fail the log (see above). */
int moor_wal_rotate(moor_wal_t *w, uint64_t number);

/* Blocks until every record appended so far is written and fdatasync'ed.
 * 0 or the log's failure code.  Not for an event-loop thread. */
int moor_wal_sync(moor_wal_t *w);

/* Drains, syncs, stops the writer, closes the file, frees w.  Returns the
 * first error seen (0 if none).  Appends racing with close get MOOR_ECLOSED. */
int moor_wal_close(moor_wal_t *w);

/* Bytes written to the current segment (for stats). */
uint64_t moor_wal_bytes(moor_wal_t *w);

/* fdatasync calls the writer has made to make records durable (not those
 * of new segment headers); for stats, and for tests of group commit. */
uint64_t moor_wal_sync_count(moor_wal_t *w);

/* Replays the segment at path: fn for each good record in order.  Stops at
 * the first bad record (see wal_format.h) and logs what it dropped; with
 * truncate != 0 it also truncates the file there and fsyncs it.  A missing
 * or short header counts as a torn segment (everything dropped).  Returns
 * 0, fn's nonzero return value (stops at once; st->dropped_bytes is then 0
 * as the rest was not examined), MOOR_EVERSION for a whole header of
 * another version (nothing is dropped or truncated), or -errno for I/O. */
int moor_wal_replay(const char *path, int truncate, moor_wal_replay_fn fn, void *ud,
                    moor_wal_replay_stats_t *st);

/* The in-memory core of replay, for the fuzzer: decodes a whole segment
 * image.  Returns 0, fn's nonzero value or MOOR_EVERSION.  Never reads
 * outside buf.  fn and st may be NULL. */
int moor_wal_decode(const char *buf, size_t len, moor_wal_replay_fn fn, void *ud,
                    moor_wal_replay_stats_t *st);

#endif
