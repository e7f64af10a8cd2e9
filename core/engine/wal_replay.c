/*
 * wal_replay.c -- reading a commit log segment back (wal.h, the byte layout
 * and the rules for torn tails and damage in wal_format.h).
 *
 * The decoder is pure: it walks a whole segment image (the file mmap'ed
 * read-only), hands out every good record in order and reports what it
 * could not read.  A bad record starts a resynchronisation at the first
 * offset after it where a record can be trusted (wal_format.h says which,
 * and how the bad record's own length field breaks a tie); the stretch in
 * between is damage, reported through a callback that logs it (or ends the
 * replay, in STOP mode).  A bad record with nothing trusted after it is a
 * torn tail.
 * The fuzzer drives the same decoder through moor_wal_decode.
 *
 * Cost: a resynchronisation looks at every byte after the bad record's
 * start until it finds a record; the checks that reject most offsets (type
 * byte, length, seqno window, batch count) come before the crc, so a scan
 * costs about a byte compare per byte, and only a bad record makes one (a
 * torn tail is scanned to the end of the file: at most one write(2)).
 *
 * Threads: no shared state.
 */
#include "wal.h"

#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "batch.h"
#include "util/buf.h"
#include "util/crc32c.h"
#include "util/err.h"
#include "util/log.h"
#include "wal_format.h"

/* ---------- replay ------------------------------------------------------ */

/* A damaged stretch followed by a good record. */
typedef struct wal_damage {
    uint64_t offset;     /* first byte not in a good record */
    uint64_t resume;     /* offset of the next good record */
    const char *reason;  /* what was wrong at offset */
    int known;           /* a good record came before: the loss is known */
    uint64_t first_lost; /* seqnos first_lost..last_lost were lost; */
    uint64_t last_lost;  /* both 0 when unknown or when none were */
} wal_damage_t;

/* Called for each damaged stretch; nonzero stops the decoding with it. */
typedef int (*wal_damage_fn)(void *ud, const wal_damage_t *d);

typedef struct wal_decoder {
    const char *buf;
    size_t len;
    moor_wal_replay_fn fn;
    void *ud;
    wal_damage_fn damage; /* NULL: damage is only counted */
    void *dud;
    moor_wal_replay_stats_t *st;
    int rc;             /* 0, fn's or damage's value, or MOOR_EVERSION */
    const char *reason; /* why the tail was dropped, NULL if nothing was */
    uint64_t prev_off;  /* the last good record (have_prev), for the */
    uint32_t prev_len;  /* seqnos lost after it */
    int have_prev;
} wal_decoder_t;

static const char *wal_check_segment_header(const char *buf, size_t len, int *rc)
{
    *rc = 0;
    if (len < MOOR_WAL_SEGMENT_HEADER)
        return "short segment header";
    if (moor_crc32c_unmask(moor_dec_fixed32(buf + 12)) != moor_crc32c(buf, 12))
        return "bad segment header checksum";
    if (moor_dec_fixed64(buf) != MOOR_WAL_MAGIC)
        return "bad segment magic";
    if (moor_dec_fixed32(buf + 8) != MOOR_WAL_VERSION)
        *rc = MOOR_EVERSION;
    return NULL;
}

/* Checks the record at p (avail bytes left): NULL if it is whole and good,
 * else why not.  Lengths are checked against avail before any use. */
static const char *wal_check_record(const char *p, size_t avail, uint32_t *len)
{
    uint32_t n;

    if (avail < MOOR_WAL_HEADER)
        return "torn record header";
    n = moor_dec_fixed32(p + 4);
    if (n > MOOR_WAL_MAX_RECORD)
        return "record length over the maximum";
    if (n > avail - MOOR_WAL_HEADER)
        return "torn record payload";
    if ((uint8_t)p[8] != MOOR_WAL_BATCH)
        return "unknown record type";
    if (moor_crc32c_unmask(moor_dec_fixed32(p)) != moor_crc32c(p + 8, 9 + (size_t)n))
        return "bad record checksum";
    *len = n;
    return NULL;
}

/* The last seqno the last good record used (its seqno plus its batch's
 * count, minus one), or 0 when there is none: then nothing bounds the
 * seqno of the record after a damaged one from above. */
static uint64_t wal_end_seq(const wal_decoder_t *d)
{
    const char *r = d->buf + d->prev_off;
    uint64_t seq;
    uint32_t count;

    if (!d->have_prev)
        return 0;
    seq = moor_dec_fixed64(r + 9);
    if (moor_batch_check(r + MOOR_WAL_HEADER, d->prev_len, &count) == 0 &&
        seq <= UINT64_MAX - count)
        return seq + count - 1;
    return seq;
}

/* Whether a record starting at p, after damage that began at bad, can be
 * trusted as the next one (wal_format.h, "Damage"): whole and checksummed,
 * a batch of at least one write that decodes, and a seqno past end_seq
 * that leaves no more writes lost than the skipped bytes could hold.  The
 * cheap tests come first: most offsets fail on the type byte. */
static int wal_candidate(const wal_decoder_t *d, size_t p, size_t bad, uint64_t end_seq,
                         int landing)
{
    const char *r = d->buf + p;
    size_t avail = d->len - p;
    uint64_t seq;
    uint32_t n, count;

    if (avail < MOOR_WAL_HEADER + MOOR_BATCH_HEADER || (uint8_t)r[8] != MOOR_WAL_BATCH)
        return 0;
    n = moor_dec_fixed32(r + 4);
    if (n < MOOR_BATCH_HEADER || n > avail - MOOR_WAL_HEADER)
        return 0;
    seq = moor_dec_fixed64(r + 9);
    if (seq <= end_seq || (end_seq && seq - end_seq - 1 > (p - bad) / MOOR_BATCH_MIN_ENTRY))
        return 0;
    count = moor_dec_fixed32(r + MOOR_WAL_HEADER);
    if (count == 0 || count > (n - MOOR_BATCH_HEADER) / MOOR_BATCH_MIN_ENTRY ||
        seq > UINT64_MAX - count)
        return 0;
    /* Where it would end, the log must end or another record begin (its
     * type byte), before a checksum of n bytes is paid: otherwise a value
     * full of fake headers after the damage would cost a checksum of up to
     * the rest of the log at every offset (quadratic). */
    if (landing && avail - MOOR_WAL_HEADER - n >= MOOR_WAL_HEADER &&
        (uint8_t)r[MOOR_WAL_HEADER + n + 8] != MOOR_WAL_BATCH)
        return 0;
    if (wal_check_record(r, avail, &n))
        return 0;
    return moor_batch_check(r + MOOR_WAL_HEADER, n, &count) == 0;
}

/* The first offset in [from, len) where a trusted record starts.  First
 * only among records that land on the end of the log or on the next
 * record's type byte (cheap, and what every good record but one followed
 * by more damage does); only if that finds none, among all. */
static int wal_scan(const wal_decoder_t *d, size_t bad, size_t from, uint64_t end_seq, size_t *next)
{
    for (int landing = 1; landing >= 0; landing--)
        for (size_t p = from; p + MOOR_WAL_HEADER + MOOR_BATCH_HEADER <= d->len; p++) {
            if (wal_candidate(d, p, bad, end_seq, landing)) {
                *next = p;
                return 1;
            }
        }
    return 0;
}

/* The seqno after the last one the record at p uses (its batch's count
 * past its own), or its seqno + 1 when the payload is no batch. */
static uint64_t wal_next_seq(const wal_decoder_t *d, size_t p, uint32_t n)
{
    uint64_t seq = moor_dec_fixed64(d->buf + p + 9);
    uint32_t count;

    if (moor_batch_check(d->buf + p + MOOR_WAL_HEADER, n, &count) || seq > UINT64_MAX - count)
        count = 1;
    return seq + count;
}

/* Whether good records lead from `from` exactly to the record at `to`,
 * each taking up the seqnos right after the one before, the last one
 * right before the record at `to`. */
static int wal_chain_reaches(const wal_decoder_t *d, size_t from, size_t to)
{
    uint64_t want = 0;
    size_t p = from;

    while (p < to) {
        uint32_t n;

        if (wal_check_record(d->buf + p, d->len - p, &n))
            return 0;
        if (p > from && moor_dec_fixed64(d->buf + p + 9) != want)
            return 0;
        want = wal_next_seq(d, p, n);
        p += MOOR_WAL_HEADER + (size_t)n;
    }
    return p == to && moor_dec_fixed64(d->buf + to + 9) == want;
}

/* Finds where good records resume after the bad record at `bad`: at the
 * first trusted record after it.  When the bad record's own length field
 * points at a trusted record further on, a record found before that lies
 * inside what the bad record claims as its payload: it is taken only if
 * good records with consecutive seqnos lead from it to the one the length
 * points at (the length was what got damaged), else it is bytes of a value
 * and the length is believed.  0 if nothing can be trusted after `bad`: a torn tail. */
static int wal_resync(const wal_decoder_t *d, size_t bad, uint64_t end_seq, size_t *next)
{
    size_t first;

    if (!wal_scan(d, bad, bad + 1, end_seq, &first))
        return 0;
    if (d->len - bad >= MOOR_WAL_HEADER) {
        uint32_t n = moor_dec_fixed32(d->buf + bad + 4);
        size_t p = bad + MOOR_WAL_HEADER + (size_t)n;

        if (n <= MOOR_WAL_MAX_RECORD && n <= d->len - bad - MOOR_WAL_HEADER && p > first &&
            p < d->len && wal_candidate(d, p, bad, end_seq, 0) && !wal_chain_reaches(d, first, p))
            first = p;
    }
    *next = first;
    return 1;
}

/* Counts the stretch [off, resume) and tells the damage callback. */
static int wal_note_damage(wal_decoder_t *d, uint64_t off, uint64_t resume, const char *reason,
                           uint64_t end_seq)
{
    wal_damage_t dm = {off, resume, reason, end_seq != 0, 0, 0};
    uint64_t next_seq = moor_dec_fixed64(d->buf + resume + 9);

    if (d->st->damaged++ == 0)
        d->st->damage_offset = off;
    d->st->damaged_bytes += resume - off;
    if (end_seq && next_seq > end_seq + 1) {
        dm.first_lost = end_seq + 1;
        dm.last_lost = next_seq - 1;
        d->st->lost_seqs += next_seq - end_seq - 1;
    }
    return d->damage ? d->damage(d->dud, &dm) : 0;
}

/* Hands out the records from off on, resynchronising past damage. */
static void wal_decode_records(wal_decoder_t *d, size_t off)
{
    moor_wal_replay_stats_t *st = d->st;

    st->valid_bytes = off;
    while (off < d->len) {
        const char *why;
        uint64_t seq;
        uint32_t n;

        why = wal_check_record(d->buf + off, d->len - off, &n);
        if (why) {
            uint64_t end_seq = wal_end_seq(d);
            size_t next;

            if (!wal_resync(d, off, end_seq, &next)) {
                d->reason = why;
                break;
            }
            if ((d->rc = wal_note_damage(d, off, next, why, end_seq)))
                return; /* stopped at the damage: nothing after it was examined */
            off = next;
            continue;
        }
        seq = moor_dec_fixed64(d->buf + off + 9);
        st->records++;
        st->last_seq = seq;
        d->prev_off = off;
        d->prev_len = n;
        d->have_prev = 1;
        off += MOOR_WAL_HEADER + (size_t)n;
        st->valid_bytes = off;
        if (d->fn && (d->rc = d->fn(d->ud, seq, d->buf + off - n, n)) != 0)
            return; /* the rest was not examined: nothing dropped */
    }
    st->dropped_bytes = d->len - st->valid_bytes;
}

static void wal_decode(wal_decoder_t *d)
{
    const char *why;
    size_t next;

    memset(d->st, 0, sizeof(*d->st));
    why = wal_check_segment_header(d->buf, d->len, &d->rc);
    if (d->rc)
        return; /* another version: nothing is dropped */
    if (!why) {
        wal_decode_records(d, MOOR_WAL_SEGMENT_HEADER);
        return;
    }
    /* A whole header that fails its checksum, with trusted records after
     * it, was damaged in place (a torn header has nothing after it). */
    if (d->len > MOOR_WAL_SEGMENT_HEADER && strcmp(why, "bad segment header checksum") == 0 &&
        wal_scan(d, 0, MOOR_WAL_SEGMENT_HEADER, 0, &next)) {
        if ((d->rc = wal_note_damage(d, 0, next, why, 0)))
            return;
        wal_decode_records(d, next);
        return;
    }
    d->reason = why;
    d->st->dropped_bytes = d->len;
}

int moor_wal_decode(const char *buf, size_t len, moor_wal_replay_fn fn, void *ud,
                    moor_wal_replay_stats_t *st)
{
    moor_wal_replay_stats_t local;
    wal_decoder_t d = {buf, len, fn, ud, NULL, NULL, st ? st : &local, 0, NULL, 0, 0, 0};

    wal_decode(&d);
    return d.rc;
}

/* Maps the file at path read-only; *map is NULL for an empty file. */
static int wal_map_file(const char *path, int fd, char **map, size_t *len)
{
    struct stat sb;

    if (fstat(fd, &sb) != 0)
        return moor_diag(-errno, "stat %s: %s", path, strerror(errno));
    *len = (size_t)sb.st_size;
    *map = NULL;
    if (*len == 0)
        return 0;
    *map = mmap(NULL, *len, PROT_READ, MAP_PRIVATE, fd, 0);
    if (*map == MAP_FAILED) {
        *map = NULL;
        return moor_diag(-errno, "mmap %s: %s", path, strerror(errno));
    }
    return 0;
}

static int wal_truncate(const char *path, int fd, uint64_t size)
{
    if (ftruncate(fd, (off_t)size) != 0)
        return moor_diag(-errno, "truncate %s to %" PRIu64 ": %s", path, size, strerror(errno));
    if (fdatasync(fd) != 0)
        return moor_diag(-errno, "fdatasync %s: %s", path, strerror(errno));
    return 0;
}

typedef struct wal_replay_log {
    const char *path;
    int flags;
} wal_replay_log_t;

/* "writes with seqnos A..B (N)" or why the count is unknown, into out. */
static void wal_lost_text(char *out, size_t cap, const wal_damage_t *dm)
{
    if (!dm->known)
        snprintf(out, cap, "an unknown number of writes lost (no valid record before it)");
    else if (dm->last_lost)
        snprintf(out, cap, "writes with seqnos %" PRIu64 "..%" PRIu64 " (%" PRIu64 ") lost",
                 dm->first_lost, dm->last_lost, dm->last_lost - dm->first_lost + 1);
    else
        snprintf(out, cap, "no write lost (the seqnos around it are consecutive)");
}

/* The damage callback of moor_wal_replay: an ERROR line per stretch, or
 * with MOOR_WAL_REPLAY_STOP a MOOR_ECORRUPT that ends the replay. */
static int wal_on_damage(void *ud, const wal_damage_t *dm)
{
    const wal_replay_log_t *l = ud;
    char lost[128];

    wal_lost_text(lost, sizeof(lost), dm);
    if (l->flags & MOOR_WAL_REPLAY_STOP)
        return moor_diag(MOOR_ECORRUPT,
                         "commit log %s is damaged at offset %" PRIu64 " (%s): %" PRIu64
                         " bytes up to the next valid record at offset %" PRIu64
                         " would be skipped, %s; refusing to recover past it",
                         l->path, dm->offset, dm->reason, dm->resume - dm->offset, dm->resume,
                         lost);
    moor_log_error("commit log %s is damaged at offset %" PRIu64 " (%s): skipped %" PRIu64
                   " bytes up to the next valid record at offset %" PRIu64
                   ", %s; every valid record after it is kept",
                   l->path, dm->offset, dm->reason, dm->resume - dm->offset, dm->resume, lost);
    return 0;
}

/* Logs (or, sealed and with STOP, refuses) what is dropped at the end. */
static int wal_report_tail(const char *path, int flags, const wal_decoder_t *d)
{
    const moor_wal_replay_stats_t *st = d->st;

    if (!(flags & MOOR_WAL_REPLAY_SEALED)) {
        moor_log_warn("wal %s: %s at offset %" PRIu64 ", dropped %" PRIu64 " bytes%s", path,
                      d->reason, st->valid_bytes, st->dropped_bytes,
                      flags & MOOR_WAL_REPLAY_TRUNCATE ? " (truncated)" : "");
        return 0;
    }
    if (flags & MOOR_WAL_REPLAY_STOP)
        return moor_diag(MOOR_ECORRUPT,
                         "commit log %s is damaged at offset %" PRIu64 " (%s): the last %" PRIu64
                         " bytes of a segment that later ones follow are unreadable; refusing "
                         "to recover past it",
                         path, st->valid_bytes, d->reason, st->dropped_bytes);
    moor_log_error("commit log %s is damaged at offset %" PRIu64 " (%s): skipped its last %" PRIu64
                   " bytes; later segments are still replayed",
                   path, st->valid_bytes, d->reason, st->dropped_bytes);
    return 0;
}

int moor_wal_replay(const char *path, int flags, moor_wal_replay_fn fn, void *ud,
                    moor_wal_replay_stats_t *st)
{
    moor_wal_replay_stats_t local;
    wal_replay_log_t log = {path, flags};
    wal_decoder_t d = {NULL, 0, fn, ud, wal_on_damage, &log, st ? st : &local, 0, NULL, 0, 0, 0};
    char *map = NULL;
    int fd, rc;

    memset(d.st, 0, sizeof(*d.st));
    fd = open(path, (flags & MOOR_WAL_REPLAY_TRUNCATE ? O_RDWR : O_RDONLY) | O_CLOEXEC);
    if (fd < 0)
        return moor_diag(-errno, "open %s: %s", path, strerror(errno));
    rc = wal_map_file(path, fd, &map, &d.len);
    if (rc)
        goto out;
    d.buf = map ? map : "";
    wal_decode(&d);
    rc = d.rc;
    if (rc == MOOR_EVERSION) /* only reported once the header is whole */
        moor_diag(rc, "wal %s: unsupported version %" PRIu32 " (want %d)", path,
                  moor_dec_fixed32(map + 8), MOOR_WAL_VERSION);
    if (map)
        munmap(map, d.len);
    if (rc)
        goto out;
    if (d.st->dropped_bytes) {
        rc = wal_report_tail(path, flags, &d);
        if (rc == 0 && (flags & MOOR_WAL_REPLAY_TRUNCATE))
            rc = wal_truncate(path, fd, d.st->valid_bytes);
    }
out:
    close(fd);
    return rc;
}
