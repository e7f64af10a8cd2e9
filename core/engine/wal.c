/*
 * wal.c -- the commit log's writer: group-committing writer thread (replay
 * is in wal_replay.c).
 *
 * Appenders encode a record (header + payload, crc computed before taking
 * the lock) into the tail chunk of a queue and return.  A chunk is a run of
 * records bound for one segment, with the completion callbacks of those
 * records in append order.  moor_wal_rotate ends the current chunk and
 * starts one tagged with the new segment number, so a rotation is ordered
 * with the records around it without any separate marker queue.
 *
 * The writer thread takes the whole queue in one step (appenders then fill
 * fresh chunks while it does I/O: double buffering), writes each chunk with
 * one write(2) loop, fdatasyncs as the sync mode asks, and calls the
 * callbacks.  Every record appended while an fdatasync runs joins the next
 * batch, so concurrent appenders share fdatasyncs (group commit).
 *
 * Progress is counted in tickets: the n-th successful append is ticket n.
 * `written` is the last ticket whose bytes reached write(2), `synced` the
 * last ticket covered by an fdatasync (records of an older segment are
 * synced when it is closed, so one counter serves all segments).
 * moor_wal_sync waits for `synced` to pass the ticket count it saw.
 *
 * Invariants:
 *   synced <= written <= appended
 *   chunks in the queue are in append order; each record and each
 *   rotation lands in exactly one chunk
 *   once err != 0 it never changes, no byte is written any more, and every
 *   callback still pending gets err
 *   the segment file always ends at a record boundary after a write that
 *   failed for want of space (it is cut back to where that write began)
 *   while nospace, the queue starts with the chunks that did not fit, whose
 *   callbacks have already run with MOOR_ENOSPC; they are written before
 *   anything appended after them, at the next retry
 *
 * Threads: mu guards the queue, appended, sync_want, synced, err, closing,
 * io_busy, nospace and its retry clock, and the spare list (nospace is also
 * mirrored in an atomic, for writers that only ask).  The fd, the segment
 * number, `written` and the interval clock belong to whichever thread owns
 * the I/O (io_busy set under mu): the writer thread, or a blocking writer
 * that helps with moor_wal_help so that a lone synchronous writer does its
 * own write(2) instead of paying two thread handoffs per record (the leader
 * of a LevelDB-style group commit).  Callbacks run on the I/O owner without
 * mu.
 */
#include "wal.h"

#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util/buf.h"
#include "util/clock.h"
#include "util/crc32c.h"
#include "util/err.h"
#include "util/file.h"
#include "util/log.h"
#include "wal_format.h"

#define WAL_DEFAULT_INTERVAL_MS 10
#define WAL_SPARE_CHUNKS 2                  /* recycled chunks kept for reuse */
#define WAL_SPARE_MAX_CAP (4u << 20)        /* bigger buffers are freed, not kept */
#define WAL_RETRY_MIN_NS (50u * 1000000u)   /* first retry after a full disk */
#define WAL_RETRY_MAX_NS (1000u * 1000000u) /* then doubling up to this */

typedef struct wal_cb {
    moor_wal_done_fn done; /* never NULL (NULL callbacks are not stored) */
    void *ud;
} wal_cb_t;

typedef struct wal_chunk {
    uint64_t segment;       /* segment these bytes go to */
    moor_buf_t data;        /* encoded records, in append order */
    wal_cb_t *cbs;          /* callbacks of those records, in append order */
    size_t ncb, capcb;      /* used / allocated entries of cbs */
    uint64_t last_ticket;   /* ticket of the last record in this chunk, or
                             * the ticket count when the chunk was started */
    struct wal_chunk *next; /* next chunk in the queue or spare list */
} wal_chunk_t;

struct moor_wal {
    pthread_mutex_t mu;
    pthread_cond_t wake;      /* writer waits here for work */
    pthread_cond_t synced_cv; /* moor_wal_sync waits here */
    pthread_t thread;

    /* guarded by mu */
    wal_chunk_t *head, *tail; /* pending chunks; tail takes new records */
    wal_chunk_t *spare;       /* recycled chunks, at most WAL_SPARE_CHUNKS */
    size_t nspare;
    uint64_t queued_segment; /* segment of the last rotation queued */
    uint64_t appended;       /* tickets handed out */
    uint64_t sync_want;      /* highest ticket a moor_wal_sync waits for */
    uint64_t synced;         /* last ticket covered by an fdatasync */
    int err;                 /* first failure, 0 while healthy */
    int closing;             /* moor_wal_close has begun */
    int io_busy;             /* a thread (writer or helper) owns the file I/O */
    int nospace;             /* the disk was full at the last write: the queue
                              * starts with records not written yet (their
                              * callbacks got MOOR_ENOSPC), retried at retry_ns */
    uint64_t retry_ns;       /* monotonic time of the next retry (nospace) */
    uint64_t backoff_ns;     /* wait before the retry after this one */

    /* writer thread only (set up by moor_wal_open before the thread) */
    int fd; /* current segment, -1 between segments */
    uint64_t seg_number;
    char seg_path[4096];   /* path of the current (or failing) segment */
    uint64_t written;      /* last ticket handed to write(2) */
    uint64_t last_sync_ns; /* monotonic time of the last fdatasync */

    /* immutable after open */
    char *dir;
    int mode;
    uint64_t interval_ns;

    char errmsg[4096 + 256]; /* text of the first failure; guarded by mu */

    _Atomic uint64_t seg_bytes;  /* bytes written to the current segment */
    _Atomic uint64_t sync_count; /* fdatasyncs of segment files */
    atomic_int nospace_now;      /* nospace && !err, for moor_wal_nospace */
};

/* ---------- segment files ---------------------------------------------- */

void moor_wal_segment_path(char *out, size_t size, const char *dir, uint64_t n)
{
    snprintf(out, size, "%s/wal-%016" PRIu64 ".log", dir, n);
}

static void wal_encode_segment_header(char *h)
{
    moor_enc_fixed64(h, MOOR_WAL_MAGIC);
    moor_enc_fixed32(h + 8, MOOR_WAL_VERSION);
    moor_enc_fixed32(h + 12, moor_crc32c_mask(moor_crc32c(h, 12)));
}

/* Creates segment n with its header, durable (file and directory entry).
 * On failure the half-made file is removed.  0 or -errno with a diag. */
static int wal_create_segment(const char *dir, uint64_t n, char *path, size_t pathsz, int *out_fd)
{
    char hdr[MOOR_WAL_SEGMENT_HEADER];
    int fd, rc;

    moor_wal_segment_path(path, pathsz, dir, n);
    fd = open(path, O_CREAT | O_EXCL | O_WRONLY | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0)
        return moor_diag(-errno, "create %s: %s", path, strerror(errno));
    wal_encode_segment_header(hdr);
    rc = moor_file_write_all(fd, hdr, sizeof(hdr));
    if (rc) {
        moor_diag_wrap(rc, rc, "write header %s", path);
        goto fail;
    }
    if (fdatasync(fd) != 0) {
        rc = moor_diag(-errno, "fdatasync %s: %s", path, strerror(errno));
        goto fail;
    }
    rc = moor_file_sync_dir(dir);
    if (rc)
        goto fail;
    *out_fd = fd;
    return 0;
fail:
    close(fd);
    unlink(path);
    return rc;
}

/* ---------- failure ----------------------------------------------------- */

/* Puts the log in the failed state (first error wins) and wakes syncers. */
static void wal_fail(moor_wal_t *w, int code, const char *what)
{
    pthread_mutex_lock(&w->mu);
    if (w->err == 0) {
        w->err = code;
        snprintf(w->errmsg, sizeof(w->errmsg), "%s %s: %s", what, w->seg_path, moor_strerror(code));
        moor_log_error("wal failed: %s", w->errmsg);
    }
    atomic_store(&w->nospace_now, 0); /* a failure is final: appends say EFAILED */
    pthread_cond_broadcast(&w->synced_cv);
    pthread_mutex_unlock(&w->mu);
}

/* ---------- writer thread ----------------------------------------------- */

static void wal_datasync(moor_wal_t *w)
{
    if (w->err || w->fd < 0 || w->written == w->synced)
        return;
    if (fdatasync(w->fd) != 0) {
        wal_fail(w, -errno, "fdatasync");
        return;
    }
    atomic_fetch_add_explicit(&w->sync_count, 1, memory_order_relaxed);
    w->last_sync_ns = moor_clock_mono_ns();
    pthread_mutex_lock(&w->mu);
    w->synced = w->written;
    pthread_cond_broadcast(&w->synced_cv);
    pthread_mutex_unlock(&w->mu);
}

/* Syncs and closes the current segment. */
static void wal_segment_finish(moor_wal_t *w)
{
    wal_datasync(w);
    if (w->fd >= 0 && close(w->fd) != 0 && !w->err)
        wal_fail(w, -errno, "close");
    w->fd = -1;
}

/* A full disk (or quota) can pass: everything else fails the log. */
static int wal_is_nospace(int rc)
{
    return rc == MOOR_ENOSPC || rc == -EDQUOT;
}

/* Opens segment n.  0; MOOR_ENOSPC when the disk is full (nothing is left
 * behind, the caller retries later); else the log fails. */
static int wal_segment_start(moor_wal_t *w, uint64_t n)
{
    int rc = wal_create_segment(w->dir, n, w->seg_path, sizeof(w->seg_path), &w->fd);

    if (rc) {
        w->fd = -1;
        if (wal_is_nospace(rc))
            return MOOR_ENOSPC;
        wal_fail(w, rc, "create segment");
        return rc;
    }
    w->seg_number = n;
    atomic_store_explicit(&w->seg_bytes, MOOR_WAL_SEGMENT_HEADER, memory_order_relaxed);
    return 0;
}

/* Calls the callbacks of chunks [from, to) with status. */
static void wal_ack(wal_chunk_t *from, wal_chunk_t *to, int status)
{
    for (wal_chunk_t *c = from; c != to; c = c->next)
        for (size_t i = 0; i < c->ncb; i++)
            c->cbs[i].done(c->cbs[i].ud, status);
}

/* Writes chunk c.  0; MOOR_ENOSPC when the disk is full, after cutting the
 * segment back to where c began (so no part of a record stays in the
 * log); else the log fails. */
static int wal_write_chunk(moor_wal_t *w, wal_chunk_t *c)
{
    uint64_t before = atomic_load_explicit(&w->seg_bytes, memory_order_relaxed);
    int rc;

    if (c->data.len == 0) {
        w->written = c->last_ticket;
        return 0;
    }
    rc = moor_file_write_all(w->fd, c->data.data, c->data.len);
    if (rc && wal_is_nospace(rc)) {
        if (ftruncate(w->fd, (off_t)before) == 0)
            return MOOR_ENOSPC;
        rc = -errno; /* a log we cannot cut back cannot be trusted */
        moor_diag(rc, "cut back to %" PRIu64 " after a full disk: %s", before, strerror(errno));
    }
    if (rc) {
        wal_fail(w, rc, "write");
        return rc;
    }
    w->written = c->last_ticket;
    atomic_fetch_add_explicit(&w->seg_bytes, c->data.len, memory_order_relaxed);
    return 0;
}

/* Writes a batch taken from the queue and runs its callbacks.  In ALWAYS
 * mode a callback waits for the fdatasync covering its record (the one at
 * a segment switch or the one at the end of the batch); otherwise it runs
 * as soon as its chunk is written.  When the disk is full, the chunks from
 * the one that did not fit on are cut off the batch and returned, their
 * callbacks run with MOOR_ENOSPC and forgotten; else NULL. */
static wal_chunk_t *wal_run_batch(moor_wal_t *w, wal_chunk_t *batch, int want_sync)
{
    int always = w->mode == MOOR_SYNC_ALWAYS;
    wal_chunk_t *unacked = batch, *prev = NULL, *c;
    int rc = 0;

    for (c = batch; c && rc != MOOR_ENOSPC; prev = c, c = c->next) {
        if (!w->err && c->segment != w->seg_number) {
            wal_segment_finish(w);
            if (always) {
                wal_ack(unacked, c, w->err);
                unacked = c;
            }
            if (!w->err && (rc = wal_segment_start(w, c->segment)) == MOOR_ENOSPC)
                break;
        }
        if (!w->err && (rc = wal_write_chunk(w, c)) == MOOR_ENOSPC)
            break;
        if (!always) {
            wal_ack(unacked, c->next, w->err);
            unacked = c->next;
        }
    }
    if (always || want_sync ||
        (w->mode == MOOR_SYNC_INTERVAL && moor_clock_mono_ns() - w->last_sync_ns >= w->interval_ns))
        wal_datasync(w);
    wal_ack(unacked, c, w->err); /* c: NULL, or the first chunk not written */
    if (!c)
        return NULL;
    wal_ack(c, NULL, w->err ? w->err : MOOR_ENOSPC);
    for (wal_chunk_t *r = c; r; r = r->next)
        r->ncb = 0; /* answered: only the bytes wait for the retry */
    if (prev)
        prev->next = NULL;
    return c;
}

/* With mu held, after a batch: puts what did not fit back at the head of
 * the queue (before anything appended meanwhile, so log order holds) and
 * enters or leaves the out-of-space state. */
static void wal_after_batch(moor_wal_t *w, wal_chunk_t *rest)
{
    uint64_t now = moor_clock_mono_ns();

    if (rest) {
        wal_chunk_t *last = rest;
        while (last->next)
            last = last->next;
        last->next = w->head;
        w->head = rest;
        if (!w->tail)
            w->tail = last;
        if (!w->nospace) {
            w->backoff_ns = WAL_RETRY_MIN_NS;
            moor_log_error("wal %s: no space left on device: writes fail with ENOSPC until "
                           "space is freed; retrying",
                           w->seg_path);
        }
        w->nospace = 1;
        atomic_store(&w->nospace_now, 1);
        w->retry_ns = now + w->backoff_ns;
        w->backoff_ns = w->backoff_ns * 2 > WAL_RETRY_MAX_NS ? WAL_RETRY_MAX_NS : w->backoff_ns * 2;
        pthread_cond_broadcast(&w->synced_cv);
        /* the writer may sleep with no deadline: it owns the retry now */
        pthread_cond_signal(&w->wake);
    } else if (w->nospace && !w->err) {
        w->nospace = 0;
        atomic_store(&w->nospace_now, 0);
        moor_log_info("wal %s: space is back, the log is written again", w->seg_path);
    }
}

static int wal_has_work(const moor_wal_t *w)
{
    if (w->io_busy) /* a helper is writing; it wakes us when it is done */
        return 0;
    if (w->closing)
        return 1;
    if (w->nospace && !w->err) /* the retry, when it is due */
        return moor_clock_mono_ns() >= w->retry_ns;
    return w->head || (!w->err && w->sync_want > w->synced);
}

/* With mu held: sleeps until there is work, until an INTERVAL log with
 * unsynced bytes is due for its periodic fdatasync, or until a retry after
 * a full disk is due. */
static void wal_wait_for_work(moor_wal_t *w)
{
    while (!wal_has_work(w)) {
        uint64_t due = 0;

        if (!w->io_busy && !w->err && w->nospace)
            due = w->retry_ns;
        else if (w->mode == MOOR_SYNC_INTERVAL && !w->io_busy && !w->err && w->written > w->synced)
            due = w->last_sync_ns + w->interval_ns;
        if (due) {
            struct timespec ts = {(time_t)(due / 1000000000u), (long)(due % 1000000000u)};
            if (pthread_cond_timedwait(&w->wake, &w->mu, &ts) == ETIMEDOUT && !w->nospace)
                return;
        } else {
            pthread_cond_wait(&w->wake, &w->mu);
        }
    }
}

static void wal_recycle(moor_wal_t *w, wal_chunk_t *c)
{
    while (c) {
        wal_chunk_t *next = c->next;
        if (w->nspare < WAL_SPARE_CHUNKS && c->data.cap <= WAL_SPARE_MAX_CAP) {
            moor_buf_reset(&c->data);
            c->ncb = 0;
            c->next = w->spare;
            w->spare = c;
            w->nspare++;
        } else {
            moor_buf_free(&c->data);
            free(c->cbs);
            free(c);
        }
        c = next;
    }
}

static void *wal_writer_main(void *arg)
{
    moor_wal_t *w = arg;
    int done = 0;

    pthread_mutex_lock(&w->mu);
    while (!done) {
        wal_chunk_t *batch, *rest;
        int want_sync;

        wal_wait_for_work(w);
        batch = w->head;
        w->head = w->tail = NULL;
        want_sync = w->closing || w->sync_want > w->synced;
        done = w->closing;
        w->io_busy = 1;
        pthread_mutex_unlock(&w->mu);

        rest = wal_run_batch(w, batch, want_sync);

        /* closing was read with the queue under mu, and appends check it
         * under mu, so nothing can be queued after the last batch */
        pthread_mutex_lock(&w->mu);
        wal_after_batch(w, rest);
        wal_recycle(w, batch == rest ? NULL : batch);
        w->io_busy = 0;
    }
    pthread_mutex_unlock(&w->mu);
    wal_segment_finish(w);
    return NULL;
}

/* ---------- appending --------------------------------------------------- */

/* With mu held: the chunk that takes records for the queued segment. */
static wal_chunk_t *wal_tail_chunk(moor_wal_t *w)
{
    wal_chunk_t *c = w->tail;

    if (c && c->segment == w->queued_segment)
        return c;
    if (w->spare) {
        c = w->spare;
        w->spare = c->next;
        w->nspare--;
    } else {
        c = calloc(1, sizeof(*c));
        if (!c)
            return NULL;
    }
    c->segment = w->queued_segment;
    c->last_ticket = w->appended;
    c->next = NULL;
    if (w->tail)
        w->tail->next = c;
    else
        w->head = c;
    w->tail = c;
    return c;
}

static int wal_reserve_cb(wal_chunk_t *c)
{
    size_t cap;
    wal_cb_t *p;

    if (c->ncb < c->capcb)
        return 0;
    cap = c->capcb ? c->capcb * 2 : 64;
    p = realloc(c->cbs, cap * sizeof(*p));
    if (!p)
        return MOOR_ENOMEM;
    c->cbs = p;
    c->capcb = cap;
    return 0;
}

/* With mu held: why an append or rotate cannot be queued now, or 0. */
static int wal_check_open(moor_wal_t *w)
{
    if (w->closing)
        return moor_diag(MOOR_ECLOSED, "wal %s is closing", w->dir);
    if (w->err)
        return moor_diag(MOOR_EFAILED, "wal failed: %s", w->errmsg);
    return 0;
}

static int wal_append(moor_wal_t *w, uint64_t seq, const char *payload, size_t len,
                      moor_wal_done_fn done, void *ud, int wake)
{
    char hdr[MOOR_WAL_HEADER];
    wal_chunk_t *c;
    uint32_t crc;
    int rc;

    if (len > MOOR_WAL_MAX_RECORD || (len && !payload))
        return moor_diag(MOOR_EINVAL, "wal record of %zu bytes (max %" PRIu32 ")", len,
                         (uint32_t)MOOR_WAL_MAX_RECORD);
    hdr[8] = MOOR_WAL_BATCH;
    moor_enc_fixed64(hdr + 9, seq);
    crc = moor_crc32c_extend(moor_crc32c(hdr + 8, 9), payload, len);
    moor_enc_fixed32(hdr, moor_crc32c_mask(crc));
    moor_enc_fixed32(hdr + 4, (uint32_t)len);

    pthread_mutex_lock(&w->mu);
    rc = wal_check_open(w);
    if (rc)
        goto out;
    c = wal_tail_chunk(w);
    if (!c || moor_buf_reserve(&c->data, sizeof(hdr) + len) || (done && wal_reserve_cb(c))) {
        rc = moor_diag(MOOR_ENOMEM, "wal append of %zu bytes", len);
        goto out;
    }
    moor_buf_append(&c->data, hdr, sizeof(hdr));
    moor_buf_append(&c->data, payload, len);
    if (done)
        c->cbs[c->ncb++] = (wal_cb_t){done, ud};
    c->last_ticket = ++w->appended;
    if (wake)
        pthread_cond_signal(&w->wake);
out:
    pthread_mutex_unlock(&w->mu);
    return rc;
}

int moor_wal_append(moor_wal_t *w, uint64_t seq, const char *payload, size_t len,
                    moor_wal_done_fn done, void *ud)
{
    return wal_append(w, seq, payload, len, done, ud, 1);
}

int moor_wal_append_nowake(moor_wal_t *w, uint64_t seq, const char *payload, size_t len,
                           moor_wal_done_fn done, void *ud)
{
    return wal_append(w, seq, payload, len, done, ud, 0);
}

void moor_wal_kick(moor_wal_t *w)
{
    pthread_mutex_lock(&w->mu);
    if (w->head && !w->io_busy)
        pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->mu);
}

int moor_wal_help(moor_wal_t *w)
{
    wal_chunk_t *batch, *rest;
    int want_sync;

    pthread_mutex_lock(&w->mu);
    if (w->io_busy || !w->head || w->closing || w->nospace) {
        /* The owner of the I/O wakes the writer when it is done, close
         * drains the queue, and a full disk is retried by the writer on its
         * own clock: the records will be written (or answered) either way. */
        if (!w->io_busy && w->head && !w->nospace)
            pthread_cond_signal(&w->wake);
        pthread_mutex_unlock(&w->mu);
        return 0;
    }
    batch = w->head;
    w->head = w->tail = NULL;
    want_sync = w->sync_want > w->synced;
    w->io_busy = 1;
    pthread_mutex_unlock(&w->mu);

    rest = wal_run_batch(w, batch, want_sync);

    pthread_mutex_lock(&w->mu);
    wal_after_batch(w, rest);
    wal_recycle(w, batch == rest ? NULL : batch);
    w->io_busy = 0;
    if ((w->head && !w->nospace) || w->closing || w->sync_want > w->synced)
        pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->mu);
    return 1;
}

int moor_wal_rotate(moor_wal_t *w, uint64_t number)
{
    uint64_t prev;
    int rc;

    pthread_mutex_lock(&w->mu);
    rc = wal_check_open(w);
    if (rc)
        goto out;
    if (number == w->queued_segment) {
        rc = moor_diag(MOOR_EINVAL, "wal rotate to the current segment %" PRIu64, number);
        goto out;
    }
    /* an empty chunk makes the writer switch even if nothing follows */
    prev = w->queued_segment;
    w->queued_segment = number;
    if (!wal_tail_chunk(w)) {
        w->queued_segment = prev;
        rc = moor_diag(MOOR_ENOMEM, "wal rotate");
        goto out;
    }
    pthread_cond_signal(&w->wake);
out:
    pthread_mutex_unlock(&w->mu);
    return rc;
}

int moor_wal_sync(moor_wal_t *w)
{
    uint64_t target;
    int rc = 0;

    pthread_mutex_lock(&w->mu);
    target = w->appended;
    if (target > w->sync_want) {
        w->sync_want = target;
        pthread_cond_signal(&w->wake);
    }
    while (!w->err && !w->nospace && w->synced < target)
        pthread_cond_wait(&w->synced_cv, &w->mu);
    if (w->err)
        rc = moor_diag(w->err, "wal failed: %s", w->errmsg);
    else if (w->synced < target)
        rc = moor_diag(MOOR_ENOSPC, "wal %s: no space left on device; records wait for space",
                       w->seg_path);
    pthread_mutex_unlock(&w->mu);
    return rc;
}

int moor_wal_nospace(moor_wal_t *w)
{
    return atomic_load(&w->nospace_now);
}

uint64_t moor_wal_bytes(moor_wal_t *w)
{
    return atomic_load_explicit(&w->seg_bytes, memory_order_relaxed);
}

uint64_t moor_wal_sync_count(moor_wal_t *w)
{
    return atomic_load_explicit(&w->sync_count, memory_order_relaxed);
}

/* ---------- open / close ------------------------------------------------ */

static void wal_free(moor_wal_t *w)
{
    wal_recycle(w, w->head); /* empty unless open failed half-way */
    while (w->spare) {
        wal_chunk_t *c = w->spare;
        w->spare = c->next;
        moor_buf_free(&c->data);
        free(c->cbs);
        free(c);
    }
    free(w->dir);
    free(w);
}

static int wal_init_sync(moor_wal_t *w)
{
    pthread_condattr_t ca;
    int ok;

    if (pthread_condattr_init(&ca))
        return MOOR_ENOMEM;
    ok = !pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) && !pthread_mutex_init(&w->mu, NULL);
    if (ok && pthread_cond_init(&w->wake, &ca)) {
        pthread_mutex_destroy(&w->mu);
        ok = 0;
    }
    if (ok && pthread_cond_init(&w->synced_cv, NULL)) {
        pthread_cond_destroy(&w->wake);
        pthread_mutex_destroy(&w->mu);
        ok = 0;
    }
    pthread_condattr_destroy(&ca);
    return ok ? 0 : MOOR_ENOMEM;
}

static void wal_destroy_sync(moor_wal_t *w)
{
    pthread_cond_destroy(&w->synced_cv);
    pthread_cond_destroy(&w->wake);
    pthread_mutex_destroy(&w->mu);
}

/* opts may be NULL: MOOR_SYNC_ALWAYS. */
int moor_wal_open(const char *dir, uint64_t number, const moor_wal_opts_t *opts, moor_wal_t **out)
{
    moor_wal_opts_t o = {MOOR_SYNC_ALWAYS, 0};
    moor_wal_t *w;
    int rc;

    if (opts)
        o = *opts;
    if (!dir || !out || o.sync_mode < MOOR_SYNC_NONE || o.sync_mode > MOOR_SYNC_ALWAYS)
        return moor_diag(MOOR_EINVAL, "wal open: bad arguments (sync_mode %d)", o.sync_mode);
    w = calloc(1, sizeof(*w));
    if (!w || !(w->dir = strdup(dir))) {
        free(w);
        return moor_diag(MOOR_ENOMEM, "wal open %s", dir);
    }
    w->mode = o.sync_mode;
    w->interval_ns = (uint64_t)(o.interval_ms ? o.interval_ms : WAL_DEFAULT_INTERVAL_MS) * 1000000u;
    w->seg_number = w->queued_segment = number;
    rc = wal_create_segment(dir, number, w->seg_path, sizeof(w->seg_path), &w->fd);
    if (rc)
        goto fail_free;
    atomic_init(&w->seg_bytes, MOOR_WAL_SEGMENT_HEADER);
    atomic_init(&w->sync_count, 0);
    atomic_init(&w->nospace_now, 0);
    w->last_sync_ns = moor_clock_mono_ns();
    rc = wal_init_sync(w);
    if (rc) {
        moor_diag(rc, "wal open %s: pthread init", dir);
        goto fail_file;
    }
    rc = pthread_create(&w->thread, NULL, wal_writer_main, w);
    if (rc) {
        rc = moor_diag(-rc, "wal open %s: pthread_create: %s", dir, strerror(rc));
        goto fail_sync;
    }
    *out = w;
    return 0;
fail_sync:
    wal_destroy_sync(w);
fail_file:
    close(w->fd);
    unlink(w->seg_path);
fail_free:
    wal_free(w);
    return rc;
}

int moor_wal_close(moor_wal_t *w)
{
    int rc;

    if (!w)
        return 0;
    pthread_mutex_lock(&w->mu);
    w->closing = 1;
    pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    rc = w->err;
    if (rc)
        moor_diag(rc, "wal failed: %s", w->errmsg);
    else if (w->head) /* the last try found the disk still full */
        rc = moor_diag(MOOR_ENOSPC,
                       "wal %s: closed with records not written for want of space (their "
                       "writers were answered ENOSPC)",
                       w->seg_path);
    wal_destroy_sync(w);
    wal_free(w);
    return rc;
}
