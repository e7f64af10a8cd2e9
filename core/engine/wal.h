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
 *
 * A full disk is not a failure.  A write(2) that gets ENOSPC (or EDQUOT)
 * cuts the segment back to where that write began, so the log never holds
 * part of a record, answers the callbacks of every record not written
 * with MOOR_ENOSPC, and keeps those records at the head of the queue: the
 * writer retries them (after 50 ms, doubling up to 1 s) before anything
 * appended later, so log order and seqno order stay one.  moor_wal_nospace
 * tells callers to stop appending meanwhile.  A record answered MOOR_ENOSPC
 * may thus still reach the log once space is back (as with a write whose
 * answer was lost, its outcome is unknown to the writer); every record
 * answered 0 is in the log.
 */
#ifndef MOOR_ENGINE_WAL_H
#define MOOR_ENGINE_WAL_H

#include <stddef.h>
#include <stdint.h>

enum moor_sync_mode { MOOR_SYNC_NONE = 0, MOOR_SYNC_INTERVAL = 1, MOOR_SYNC_ALWAYS = 2 };

typedef struct moor_wal moor_wal_t;

/* Called on the writer thread (or a helping writer) once the record is written (and synced, in
 * ALWAYS mode).  status is 0 or a negative MOOR_E* code.  Must not call
 * back into the wal. */
typedef void (*moor_wal_done_fn)(void *ud, int status);

typedef struct moor_wal_opts {
    int sync_mode;        /* enum moor_sync_mode */
    unsigned interval_ms; /* for MOOR_SYNC_INTERVAL; default 10 */
} moor_wal_opts_t;

typedef int (*moor_wal_replay_fn)(void *ud, uint64_t seq, const char *payload, size_t len);

typedef struct moor_wal_replay_stats {
    uint64_t records;       /* records handed to the callback */
    uint64_t valid_bytes;   /* offset just past the last good record */
    uint64_t dropped_bytes; /* bytes after it: the tail (torn, or damaged) */
    uint64_t last_seq;      /* seqno of the last good record (0 if none) */
    uint64_t damaged;       /* damaged stretches with good records after them */
    uint64_t damaged_bytes; /* bytes in those stretches (skipped, not dropped) */
    uint64_t damage_offset; /* where the first of them starts (0: the header) */
    uint64_t lost_seqs;     /* seqnos known lost in them (see wal_format.h) */
} moor_wal_replay_stats_t;

/* Flags of moor_wal_replay. */
enum {
    MOOR_WAL_REPLAY_TRUNCATE = 1, /* cut a bad tail off the file (the last segment) */
    MOOR_WAL_REPLAY_SEALED = 2,   /* later segments follow this one: it was synced
                                   * whole before they began, so a bad tail is damage
                                   * (an ERROR), not a torn write (a WARN) */
    MOOR_WAL_REPLAY_STOP = 4      /* damage (a damaged stretch, or a bad tail of a
                                   * sealed segment) ends the replay with
                                   * MOOR_ECORRUPT naming file and offset, before any
                                   * record after it, and the file is left as is */
};

/* ===== API ===== */

/* Path of segment n in dir into out (size >= strlen(dir) + 32). */
void moor_wal_segment_path(char *out, size_t size, const char *dir, uint64_t n);

/* Creates segment `number` in dir (fails with MOOR_EEXIST if present),
 * writes and syncs its header, fsyncs dir, and starts the writer thread.
 * opts may be NULL (MOOR_SYNC_ALWAYS).  0 or a negative code, with a
 * diagnostic. */
int moor_wal_open(const char *dir, uint64_t number, const moor_wal_opts_t *opts, moor_wal_t **out);

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
 * 0, the log's failure code, or MOOR_ENOSPC while the disk is full.  Not
 * for an event-loop thread. */
int moor_wal_sync(moor_wal_t *w);

/* Drains, syncs, stops the writer, closes the file, frees w.  Returns the
 * first error seen (0 if none), or MOOR_ENOSPC if records were still
 * waiting for space (they were answered so).  Appends racing with close
 * get MOOR_ECLOSED. */
int moor_wal_close(moor_wal_t *w);

/* 1 while the disk is full (see above): records appended now would only
 * queue behind those waiting for space.  Thread-safe. */
int moor_wal_nospace(moor_wal_t *w);

/* Bytes written to the current segment (for stats). */
uint64_t moor_wal_bytes(moor_wal_t *w);

/* fdatasync calls the writer has made to make records durable (not those
 * of new segment headers); for stats, and for tests of group commit. */
uint64_t moor_wal_sync_count(moor_wal_t *w);

/* Replays the segment at path: fn for each good record in order.  A bad
 * record followed by good ones is damage: the good ones are kept (the
 * decoder resynchronises, wal_format.h) and each damaged stretch is logged
 * as an ERROR with the file, offset, bytes and the writes lost, unless
 * flags has MOOR_WAL_REPLAY_STOP.  A bad record with nothing good after it
 * is a torn tail: dropped and logged (a WARN; an ERROR if SEALED), and with
 * MOOR_WAL_REPLAY_TRUNCATE cut off the file, which is then fsynced.  A
 * missing or short header is a torn segment (everything dropped).  Returns
 * 0, fn's nonzero value (stops at once; st->dropped_bytes is then 0 as the
 * rest was not examined), MOOR_ECORRUPT (STOP, see above), MOOR_EVERSION
 * for a whole header of another version (nothing is dropped or truncated),
 * or -errno for I/O. */
int moor_wal_replay(const char *path, int flags, moor_wal_replay_fn fn, void *ud,
                    moor_wal_replay_stats_t *st);

/* The in-memory core of replay, for the fuzzer: decodes a whole segment
 * image, resynchronising past damage as replay does, logging nothing.
 * Returns 0, fn's nonzero value or MOOR_EVERSION.  Never reads outside
 * buf.  fn and st may be NULL. */
int moor_wal_decode(const char *buf, size_t len, moor_wal_replay_fn fn, void *ud,
                    moor_wal_replay_stats_t *st);

#endif
