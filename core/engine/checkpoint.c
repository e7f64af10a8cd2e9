/*
 * checkpoint.c -- a consistent copy of the database next to it, taken
 * without stopping writers (as RocksDB's checkpoints and Cassandra's
 * snapshots do).
 *
 * The point of the copy is the moment the call takes e->mu: the current
 * version (the tables) and last_seq S are read together, with the oldest
 * log segment any memtable still needs.  From there on nothing holds mu:
 *   - the version stays pinned (referenced), so no table it lists is
 *     deleted while it is linked;
 *   - ckpt_keep_log stops moor_db_delete_old_logs from deleting the
 *     segments being copied when a flush finishes meanwhile;
 *   - moor_wal_sync makes every record up to S written (and a rotated
 *     segment whole), so the copies hold each write made before the call;
 *   - each copied segment is cut just before its first record past S, so
 *     the copy holds exactly the writes up to S: tables are immutable and
 *     hard-linked (no data copied), the log is copied (it keeps growing).
 * A MANIFEST written for the copy lists exactly the pinned tables with
 * log_number = the oldest copied segment and last_seq = S, so opening the
 * copy is a normal recovery: its log is replayed into memtables.
 *
 * Blocks on disk (the log sync, the copies, fsyncs): callers run it off
 * any event loop.  One checkpoint at a time per engine.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "db_impl.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/file.h"
#include "util/log.h"
#include "wal_format.h"

#define COPY_CHUNK (1u << 20)

/* What the call captured under mu. */
typedef struct ckpt {
    struct moor_engine *e;
    const char *dir;
    moor_version_t *v; /* pinned */
    uint64_t last_seq;
    uint64_t oldest_log, newest_log;
    uint64_t next_file;
    moor_engine_checkpoint_t *out;
    char *buf; /* COPY_CHUNK bytes */
} ckpt_t;

static int is_nospace_errno(int err)
{
    return err == ENOSPC || err == EDQUOT;
}

/* -errno of a failed system call, ENOSPC mapped to MOOR_ENOSPC. */
static int sys_fail(const char *what, const char *path)
{
    int err = errno;

    return moor_diag(is_nospace_errno(err) ? MOOR_ENOSPC : -err, "checkpoint: %s %s: %s", what,
                     path, strerror(err));
}

/* Copies the first len bytes of src into the new file dst, fdatasync'ed. */
static int copy_prefix(ckpt_t *k, const char *src, const char *dst, uint64_t len)
{
    int in = open(src, O_RDONLY | O_CLOEXEC), out = -1, rc = 0;
    uint64_t done = 0;

    if (in < 0)
        return sys_fail("cannot open", src);
    out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (out < 0) {
        rc = sys_fail("cannot create", dst);
        goto out;
    }
    while (done < len) {
        size_t want = len - done < COPY_CHUNK ? (size_t)(len - done) : COPY_CHUNK;
        ssize_t got = pread(in, k->buf, want, (off_t)done);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            rc = got < 0 ? sys_fail("cannot read", src)
                         : moor_diag(MOOR_EIO, "checkpoint: %s ended early", src);
            goto out;
        }
        if ((rc = moor_file_write_all(out, k->buf, (size_t)got))) {
            if (rc == -ENOSPC || rc == -EDQUOT)
                rc = MOOR_ENOSPC;
            rc = moor_diag_wrap(rc, rc, "checkpoint: writing %s", dst);
            goto out;
        }
        done += (uint64_t)got;
    }
    if (fdatasync(out) != 0)
        rc = sys_fail("cannot sync", dst);
out:
    if (out >= 0)
        close(out);
    close(in);
    return rc;
}

/* Hard-links src to dst; copies it where links cannot be made (another
 * filesystem, or one without links).  Counts the bytes where they went. */
static int link_or_copy(ckpt_t *k, const char *src, const char *dst, uint64_t size)
{
    if (link(src, dst) == 0) {
        k->out->linked_bytes += size;
        return 0;
    }
    if (errno != EXDEV && errno != EPERM && errno != EMLINK)
        return sys_fail("cannot link", dst);
    k->out->copied_bytes += size;
    return copy_prefix(k, src, dst, size);
}

/* The length of the segment image at path that holds only records with
 * seqnos up to last_seq: the offset of the first record past it, or the
 * whole size when there is none (or when the records cannot be walked:
 * recovery of the copy then judges the rest as it would the original). */
static int segment_cut(ckpt_t *k, const char *path, uint64_t *len)
{
    unsigned char h[MOOR_WAL_HEADER];
    struct stat st;
    uint64_t off = MOOR_WAL_SEGMENT_HEADER;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return sys_fail("cannot open", path);
    if (fstat(fd, &st) != 0) {
        int rc = sys_fail("cannot stat", path);
        close(fd);
        return rc;
    }
    *len = (uint64_t)st.st_size;
    while (off + MOOR_WAL_HEADER <= *len) {
        uint32_t rlen;
        uint64_t seq;
        if (pread(fd, h, sizeof(h), (off_t)off) != (ssize_t)sizeof(h))
            break;
        rlen = moor_dec_fixed32((const char *)h + 4);
        seq = moor_dec_fixed64((const char *)h + 9);
        if (seq > k->last_seq) {
            *len = off;
            break;
        }
        if (rlen > MOOR_WAL_MAX_RECORD)
            break;
        off += MOOR_WAL_HEADER + rlen;
    }
    close(fd);
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Copies the segments from oldest_log to newest_log, each cut at S. */
static int copy_log(ckpt_t *k)
{
    DIR *d = opendir(k->e->dir);
    struct dirent *de;
    uint64_t segs[MOOR_FROZEN_MAX + 2], len = 0;
    size_t n = 0;
    int rc = 0;

    if (!d)
        return sys_fail("cannot list", k->e->dir);
    while ((de = readdir(d))) {
        unsigned long long num;
        int used = 0;
        if (sscanf(de->d_name, "wal-%16llu.log%n", &num, &used) != 1 || used != 24 ||
            de->d_name[used] || num < k->oldest_log || num > k->newest_log)
            continue;
        if (n == sizeof(segs) / sizeof(segs[0])) {
            closedir(d);
            return moor_diag(MOOR_ECORRUPT, "checkpoint: more log segments in %s than memtables",
                             k->e->dir);
        }
        segs[n++] = num;
    }
    closedir(d);
    qsort(segs, n, sizeof(segs[0]), cmp_u64);
    for (size_t i = 0; i < n && rc == 0; i++) {
        char src[4096], dst[4096];
        moor_wal_segment_path(src, sizeof(src), k->e->dir, segs[i]);
        moor_wal_segment_path(dst, sizeof(dst), k->dir, segs[i]);
        if ((rc = segment_cut(k, src, &len)) == 0 && (rc = copy_prefix(k, src, dst, len)) == 0)
            k->out->copied_bytes += len;
    }
    return rc;
}

/* Links every table of the pinned version and writes the MANIFEST listing
 * exactly them. */
static int link_tables(ckpt_t *k)
{
    moor_manifest_t m;
    int rc = 0;

    moor_manifest_init(&m);
    m.next_file = k->next_file;
    m.last_seq = k->last_seq;
    m.log_number = k->oldest_log;
    for (int l = 0; l < MOOR_MAX_LEVELS && rc == 0; l++) {
        for (size_t i = 0; i < k->v->n[l] && rc == 0; i++) {
            const moor_file_meta_t *f = &k->v->files[l][i]->meta;
            char src[4096], dst[4096];
            moor_table_path(src, sizeof(src), k->e->dir, f->number);
            moor_table_path(dst, sizeof(dst), k->dir, f->number);
            if ((rc = link_or_copy(k, src, dst, f->size)) == 0 &&
                (rc = moor_manifest_add(&m, f)) == 0)
                k->out->tables++;
        }
    }
    if (rc == 0 && (rc = moor_manifest_write(k->dir, &m)) && (rc == -ENOSPC || rc == -EDQUOT))
        rc = moor_diag_wrap(MOOR_ENOSPC, rc, "checkpoint: MANIFEST");
    moor_manifest_clear(&m);
    return rc;
}

/* Removes what a failed checkpoint left in dir, and dir. */
static void remove_partial(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;

    while (d && (de = readdir(d))) {
        char path[4096];
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        unlink(path);
    }
    if (d)
        closedir(d);
    rmdir(dir);
}

/* Under mu: the point of the copy. */
static int capture(ckpt_t *k)
{
    struct moor_engine *e = k->e;
    int rc = 0;

    pthread_mutex_lock(&e->mu);
    if (e->ckpt_running) {
        rc = moor_diag(MOOR_EBUSY, "engine %s: a checkpoint is already running", e->dir);
    } else if (e->closing) {
        rc = MOOR_ECLOSED;
    } else {
        e->ckpt_running = 1;
        k->v = e->cur;
        moor_version_ref(k->v);
        k->last_seq = e->last_seq;
        k->newest_log = e->mem_log;
        k->oldest_log = e->nfrozen ? e->frozen[0].log_number : e->mem_log;
        e->ckpt_keep_log = k->oldest_log;
        k->next_file = e->next_file;
    }
    pthread_mutex_unlock(&e->mu);
    return rc;
}

int moor_engine_checkpoint(moor_engine_t *e, const char *dir, moor_engine_checkpoint_t *out)
{
    ckpt_t k = {.e = e, .dir = dir, .out = out};
    uint64_t t0 = moor_clock_mono_ns();
    int rc;

    memset(out, 0, sizeof(*out));
    if (mkdir(dir, 0755) != 0)
        return errno == EEXIST ? moor_diag(MOOR_EEXIST, "checkpoint: %s already exists", dir)
                               : sys_fail("cannot create", dir);
    if (!(k.buf = malloc(COPY_CHUNK))) {
        rmdir(dir);
        return MOOR_ENOMEM;
    }
    if ((rc = capture(&k))) {
        free(k.buf);
        rmdir(dir);
        return rc;
    }
    /* Every record up to S is written (and rotated segments whole) once
     * this returns: writes made before the call are in the files copied. */
    if ((rc = moor_wal_sync(e->wal)))
        rc = moor_diag_wrap(rc, rc, "checkpoint: syncing the commit log");
    if (rc == 0)
        rc = link_tables(&k);
    if (rc == 0)
        rc = copy_log(&k);
    if (rc == 0 && (rc = moor_file_sync_dir(dir)) && (rc == -ENOSPC || rc == -EDQUOT))
        rc = MOOR_ENOSPC;
    pthread_mutex_lock(&e->mu);
    e->ckpt_running = 0;
    pthread_mutex_unlock(&e->mu);
    moor_version_unref(k.v);
    free(k.buf);
    if (rc) {
        remove_partial(dir);
        memset(out, 0, sizeof(*out));
        return rc;
    }
    out->last_seq = k.last_seq;
    out->us = (moor_clock_mono_ns() - t0) / 1000;
    moor_log_info("engine %s: checkpoint %s: %u tables linked (%llu bytes), %llu bytes of log "
                  "copied, up to seq %llu",
                  e->dir, dir, out->tables, (unsigned long long)out->linked_bytes,
                  (unsigned long long)out->copied_bytes, (unsigned long long)out->last_seq);
    return 0;
}
