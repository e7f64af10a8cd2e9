/*
 * test_corruption.c -- damaged files on disk never turn into wrong answers.
 *
 * Tables: a database with two versions of every key in two tables is
 * copied, one byte of one .sst is flipped (data blocks, block trailers,
 * filter, index, every footer field, random spots), and the copy is opened.
 * Either open fails with a diagnostic naming the table, or every get
 * returns the newest value or MOOR_ECORRUPT (naming the table), and a full
 * scan returns the newest values in order and either all of them or stops
 * with MOOR_ECORRUPT.  Never NOTFOUND for a live key, never an old version,
 * never garbage.  A flip anywhere but the Bloom filter must be noticed by
 * the scan, which reads every other byte of every table.
 *
 * Commit log: a child process writes keys with sync=always, one put per
 * record, and _exits without closing (a crash image).  The copy's last
 * segment is damaged by flipping a byte in record r (crc, length, type,
 * seqno, batch count, payload, last byte), or truncated inside record r.
 * A flip in a record with valid ones after it is damage: reopening gives
 * back every key but r, and stats count one damaged stretch and the write
 * lost; a flip in the last record or a cut is a torn tail: exactly keys
 * 0..r-1, counted as torn bytes (wal_format.h).  With wal_recovery = stop,
 * damage fails the open with MOOR_ECORRUPT naming file and offset and
 * leaves the file as it was, while a torn tail still opens.  Writes after
 * recovery survive another reopen, which finds a clean log.  Several
 * segments: damage in a segment that later ones follow (in the middle, in
 * its last record, or its end cut off) keeps every valid record of it and
 * of the later segments.
 *
 * Locking: a second open of the same directory, from this process or
 * another, gets MOOR_EBUSY.
 */
#include "testutil.h" /* first: it sets _GNU_SOURCE */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "engine/batch.h"
#include "engine/engine.h"
#include "engine/wal.h"
#include "engine/table_format.h"
#include "engine/wal_format.h"
#include "util/err.h"

#define NK 1500       /* keys in the table test */
#define NW 300        /* records in the log test */
#define DIR_CAP 2048  /* a directory path */
#define PATH_CAP 4400 /* a directory path + a file name */

static uint64_t seed, rng;

static void key_of(char *out, int i)
{
    snprintf(out, 16, "key%06d", i);
}

/* The value of key i at version ver: its length and bytes depend on both,
 * so an old version or another key's value never matches. */
static size_t value_of(char *out, int i, int ver)
{
    size_t n = 40 + (size_t)((i * 37 + ver * 11) % 160), j;

    for (j = 0; j < n; j++)
        out[j] = (char)((i * 131 + ver * 71 + (int)j * 13) ^ (int)(j >> 3));
    return n;
}

/* ---- files ----------------------------------------------------------- */

static void copy_file(const char *src, const char *dst)
{
    char buf[65536];
    int in = open(src, O_RDONLY), out;
    ssize_t n;

    assert_true(in >= 0);
    out = open(dst, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(out >= 0);
    while ((n = read(in, buf, sizeof(buf))) > 0)
        assert_int_equal(write(out, buf, (size_t)n), n);
    assert_int_equal(n, 0);
    close(in);
    close(out);
}

/* Copies the regular files of flat directory src into a fresh dst. */
static void copy_dir(const char *src, const char *dst)
{
    DIR *d = opendir(src);
    struct dirent *de;

    assert_non_null(d);
    testutil_rmrf(dst);
    assert_int_equal(mkdir(dst, 0755), 0);
    while ((de = readdir(d)) != NULL) {
        char s[PATH_CAP], t[PATH_CAP];
        struct stat st;

        snprintf(s, sizeof(s), "%s/%s", src, de->d_name);
        if (stat(s, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        snprintf(t, sizeof(t), "%s/%s", dst, de->d_name);
        copy_file(s, t);
    }
    closedir(d);
}

static int has_suffix(const char *s, const char *suf)
{
    size_t n = strlen(s), m = strlen(suf);

    return n >= m && strcmp(s + n - m, suf) == 0;
}

/* Names (not paths) of the files in dir ending in suffix, sorted; returns
 * the count.  names[i] is malloc'ed. */
static int list_files(const char *dir, const char *prefix, const char *suffix, char **names,
                      int cap)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int n = 0, i, j;

    assert_non_null(d);
    while ((de = readdir(d)) != NULL)
        if (has_suffix(de->d_name, suffix) && strncmp(de->d_name, prefix, strlen(prefix)) == 0 &&
            n < cap)
            names[n++] = strdup(de->d_name);
    closedir(d);
    for (i = 1; i < n; i++) /* the names are fixed-width numbers: strcmp order is numeric */
        for (j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
            char *t = names[j];
            names[j] = names[j - 1];
            names[j - 1] = t;
        }
    return n;
}

static void free_names(char **names, int n)
{
    while (n-- > 0)
        free(names[n]);
}

static off_t file_size(const char *path)
{
    struct stat st;

    assert_int_equal(stat(path, &st), 0);
    return st.st_size;
}

static void pread_all(const char *path, void *buf, size_t n, off_t off)
{
    int fd = open(path, O_RDONLY);

    assert_true(fd >= 0);
    assert_int_equal(pread(fd, buf, n, off), (ssize_t)n);
    close(fd);
}

static void flip_byte(const char *path, off_t off)
{
    int fd = open(path, O_RDWR);
    unsigned char c;
    unsigned char x = (unsigned char)(1 + testutil_rand(&rng) % 255);

    assert_true(fd >= 0);
    assert_int_equal(pread(fd, &c, 1, off), 1);
    c ^= x;
    assert_int_equal(pwrite(fd, &c, 1, off), 1);
    close(fd);
}

static uint64_t le64(const unsigned char *p)
{
    uint64_t v = 0;
    int i;

    for (i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* ---- tables ------------------------------------------------------------ */

static void put_all(moor_engine_t *e, int n, int ver)
{
    char k[16], v[256];
    int i;

    for (i = 0; i < n; i++) {
        size_t vlen = value_of(v, i, ver);

        key_of(k, i);
        assert_int_equal(moor_engine_put(e, k, strlen(k), v, vlen), 0);
    }
}

/* Pristine database: every key at version 1 in one table, version 2 in a
 * newer one (the newer table is what gets must answer from). */
static void make_table_db(const char *dir)
{
    moor_engine_opts_t o;
    moor_engine_t *e = NULL;

    moor_engine_opts_default(&o);
    o.block_size = 1024;
    o.l0_compact = 8; /* keep both tables in L0, untouched */
    assert_int_equal(moor_engine_open(dir, &o, &e), 0);
    put_all(e, NK, 1);
    assert_int_equal(moor_engine_flush(e), 0);
    put_all(e, NK, 2);
    assert_int_equal(moor_engine_flush(e), 0);
    assert_int_equal(moor_engine_close(e), 0);
}

typedef struct flip_result {
    int open_failed;
    int get_corrupt;  /* gets that returned MOOR_ECORRUPT */
    int scan_corrupt; /* 1 if the scan stopped with MOOR_ECORRUPT */
} flip_result_t;

static void check_names_table(const char *what, const char *msg, const char *table)
{
    char num[64];
    size_t n = strlen(table) - strlen(".sst");

    memcpy(num, table, n);
    num[n] = '\0';
    if (!strstr(msg, num))
        fail_msg("seed %llu: %s: diagnostic \"%s\" does not name table %s",
                 (unsigned long long)seed, what, msg, table);
}

static void check_gets_after_flip(moor_engine_t *e, const char *where, const char *table,
                                  flip_result_t *res)
{
    char k[16], want[256];
    int i;

    for (i = 0; i < NK; i++) {
        void *v = NULL;
        size_t vlen = 0, wlen = value_of(want, i, 2);
        int rc;

        key_of(k, i);
        rc = moor_engine_get(e, k, strlen(k), &v, &vlen);
        if (rc == MOOR_ECORRUPT) {
            check_names_table(where, moor_diag_last()->msg, table);
            res->get_corrupt++;
            continue;
        }
        if (rc != 0 || vlen != wlen || memcmp(v, want, wlen) != 0)
            fail_msg("seed %llu: %s: get %s: rc %s len %zu, want the version-2 value "
                     "(%zu bytes) or CORRUPT",
                     (unsigned long long)seed, where, k, moor_err_name(rc), vlen, wlen);
        moor_engine_free(v);
    }
}

static void check_scan_after_flip(moor_engine_t *e, const char *where, flip_result_t *res)
{
    moor_engine_iter_t *it = moor_engine_iter_new(e, NULL, 0, NULL, 0);
    char k[16], want[256];
    int i = 0, st;

    assert_non_null(it);
    for (moor_engine_iter_seek_first(it); moor_engine_iter_valid(it);
         moor_engine_iter_next(it), i++) {
        size_t klen, vlen, wlen;
        const void *ik = moor_engine_iter_key(it, &klen);
        const void *iv = moor_engine_iter_value(it, &vlen);

        key_of(k, i);
        wlen = value_of(want, i, 2);
        if (i >= NK || klen != strlen(k) || memcmp(ik, k, klen) != 0 || vlen != wlen ||
            memcmp(iv, want, wlen) != 0)
            fail_msg("seed %llu: %s: scan entry %d is not %s at version 2",
                     (unsigned long long)seed, where, i, k);
    }
    st = moor_engine_iter_status(it);
    if (st == 0 && i != NK)
        fail_msg("seed %llu: %s: scan ended cleanly after %d of %d keys", (unsigned long long)seed,
                 where, i, NK);
    if (st != 0 && st != MOOR_ECORRUPT)
        fail_msg("seed %llu: %s: scan status %s", (unsigned long long)seed, where,
                 moor_err_name(st));
    res->scan_corrupt = st == MOOR_ECORRUPT;
    moor_engine_iter_free(it);
}

/* Copies pristine to work, flips the byte at off of table, checks. */
static flip_result_t flip_and_check(const char *pristine, const char *work, const char *table,
                                    off_t off, const char *what)
{
    char path[PATH_CAP], where[256];
    moor_engine_opts_t o;
    moor_engine_t *e = NULL;
    flip_result_t res = {0};
    int rc;

    copy_dir(pristine, work);
    snprintf(path, sizeof(path), "%s/%s", work, table);
    flip_byte(path, off);
    snprintf(where, sizeof(where), "%s byte %lld (%s)", table, (long long)off, what);
    moor_engine_opts_default(&o);
    o.l0_compact = 8;
    moor_diag_clear();
    rc = moor_engine_open(work, &o, &e);
    if (rc != 0) {
        assert_true(rc < 0);
        assert_null(e);
        check_names_table(where, moor_diag_last()->msg, table);
        res.open_failed = 1;
        return res;
    }
    check_gets_after_flip(e, where, table, &res);
    check_scan_after_flip(e, where, &res);
    moor_engine_close(e); /* may report the corruption a background task met */
    return res;
}

typedef struct spot {
    off_t off;
    const char *what;
    int must_detect; /* 0 for the Bloom filter, which a scan does not read */
} spot_t;

/* The interesting offsets of a table, from its footer. */
static int table_spots(const char *path, spot_t *s, int cap)
{
    unsigned char f[MOOR_TABLE_FOOTER];
    off_t size = file_size(path), foot = size - MOOR_TABLE_FOOTER;
    uint64_t filter_off, filter_size, index_off, index_size;
    int n = 0, i;

    assert_true(size > MOOR_TABLE_FOOTER);
    pread_all(path, f, sizeof(f), foot);
    filter_off = le64(f), filter_size = le64(f + 8);
    index_off = le64(f + 16), index_size = le64(f + 24);
    assert_true(index_off + index_size + MOOR_BLOCK_TRAILER <= (uint64_t)foot);
    assert_true(filter_off + filter_size <= index_off);

    s[n++] = (spot_t){0, "first data byte", 1};
    s[n++] = (spot_t){(off_t)filter_off / 2, "middle data block", 1};
    s[n++] = (spot_t){(off_t)filter_off - 1, "last data block trailer crc", 1};
    s[n++] = (spot_t){(off_t)filter_off - MOOR_BLOCK_TRAILER, "last data block compression", 1};
    if (filter_size > 0)
        s[n++] = (spot_t){(off_t)(filter_off + filter_size / 2), "filter block", 0};
    s[n++] = (spot_t){(off_t)index_off, "index first byte", 1};
    s[n++] = (spot_t){(off_t)(index_off + index_size / 2), "index middle", 1};
    s[n++] = (spot_t){(off_t)(index_off + index_size - 2), "index restart count", 1};
    s[n++] = (spot_t){(off_t)(index_off + index_size + 2), "index trailer crc", 1};
    s[n++] = (spot_t){foot + 0, "footer filter_off", 1};
    s[n++] = (spot_t){foot + 8, "footer filter_size", 1};
    s[n++] = (spot_t){foot + 16, "footer index_off", 1};
    s[n++] = (spot_t){foot + 24, "footer index_size", 1};
    s[n++] = (spot_t){foot + 32, "footer entries", 1};
    s[n++] = (spot_t){foot + 40, "footer version", 1};
    s[n++] = (spot_t){foot + 44, "footer crc", 1};
    s[n++] = (spot_t){size - 1, "footer magic", 1};
    for (i = 0; i < 4 && n < cap; i++) {
        off_t off = (off_t)(testutil_rand(&rng) % (uint64_t)size);
        /* The filter and its trailer: an engine may load it lazily, for gets only. */
        int in_filter = (uint64_t)off >= filter_off &&
                        (uint64_t)off < filter_off + filter_size + MOOR_BLOCK_TRAILER;

        s[n++] = (spot_t){off, "random", !in_filter};
    }
    assert_true(n <= cap);
    return n;
}

static void test_sst_flips(void **state)
{
    char *base = testutil_tmpdir("corrupt-sst");
    char pristine[DIR_CAP], work[DIR_CAP], path[PATH_CAP], *tables[16];
    int ntables, t;

    (void)state;
    seed = testutil_seed("corrupt-sst");
    rng = seed | 1;
    snprintf(pristine, sizeof(pristine), "%s/pristine", base);
    snprintf(work, sizeof(work), "%s/work", base);
    assert_int_equal(mkdir(pristine, 0755), 0);
    make_table_db(pristine);
    ntables = list_files(pristine, "", ".sst", tables, 16);
    assert_true(ntables >= 2);

    for (t = 0; t < ntables; t++) {
        spot_t spots[32];
        int ns, i;

        snprintf(path, sizeof(path), "%s/%s", pristine, tables[t]);
        ns = table_spots(path, spots, 32);
        for (i = 0; i < ns; i++) {
            flip_result_t r =
                flip_and_check(pristine, work, tables[t], spots[i].off, spots[i].what);
            int noticed = r.open_failed || r.get_corrupt || r.scan_corrupt;

            if (spots[i].must_detect && !noticed)
                fail_msg("seed %llu: flipped byte %lld of %s (%s) went unnoticed by a full "
                         "scan",
                         (unsigned long long)seed, (long long)spots[i].off, tables[t],
                         spots[i].what);
        }
    }
    free_names(tables, ntables);
    testutil_rmrf(base);
    free(base);
}

/* ---- commit log ------------------------------------------------------- */

/* Crash image: a child writes NW keys with sync=always (one record each)
 * and dies without closing, so everything lives only in the log. */
static void make_log_db(const char *dir)
{
    pid_t pid = fork();
    int status;

    assert_true(pid >= 0);
    if (pid == 0) {
        moor_engine_opts_t o;
        moor_engine_t *e = NULL;
        char k[16], v[256];
        int i;

        moor_engine_opts_default(&o);
        o.sync_mode = MOOR_SYNC_ALWAYS; /* acknowledged after fdatasync: in the file */
        if (moor_engine_open(dir, &o, &e) != 0)
            _exit(2);
        for (i = 0; i < NW; i++) {
            size_t vlen = value_of(v, i, 1);

            key_of(k, i);
            if (moor_engine_put(e, k, strlen(k), v, vlen) != 0)
                _exit(3);
        }
        _exit(0);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* Offsets where each record of the segment starts, plus the end. */
static int log_records(const char *path, off_t *starts, int cap)
{
    off_t size = file_size(path), off = MOOR_WAL_SEGMENT_HEADER;
    int n = 0;

    while (off + MOOR_WAL_HEADER <= size) {
        unsigned char h[MOOR_WAL_HEADER];

        pread_all(path, h, sizeof(h), off);
        assert_true(n < cap);
        assert_int_equal(h[8], MOOR_WAL_BATCH);
        starts[n++] = off;
        off += MOOR_WAL_HEADER + le32(h + 4);
    }
    assert_int_equal(off, size);
    starts[n] = off;
    return n;
}

/* What a damaged log must give back: keys 0..nkept-1 except `lost` (-1:
 * none), and what recovery must report. */
typedef struct log_want {
    int nkept;
    int lost;        /* the one key inside the damage, or -1 */
    int damaged;     /* stats.wal_damaged after the first reopen */
    int lost_writes; /* stats.wal_lost_writes */
    int torn;        /* stats.wal_torn_bytes > 0 */
} log_want_t;

static void check_log_stats(moor_engine_t *e, const log_want_t *w, int round, const char *what)
{
    moor_engine_stats_t st;

    moor_engine_stats(e, &st);
    /* The damaged segment is gone after the first recovery (flushed to a
     * table): the second open finds a clean log. */
    if (st.wal_damaged != (uint64_t)(round ? 0 : w->damaged) ||
        st.wal_lost_writes != (uint64_t)(round ? 0 : w->lost_writes) ||
        (st.wal_damaged_bytes > 0) != (st.wal_damaged > 0) ||
        (st.wal_torn_bytes > 0) != (round ? 0 : w->torn))
        fail_msg("seed %llu: %s: round %d: stats damaged %llu (%llu bytes), lost %llu, torn "
                 "%llu; want damaged %d, lost %d, torn %s",
                 (unsigned long long)seed, what, round, (unsigned long long)st.wal_damaged,
                 (unsigned long long)st.wal_damaged_bytes, (unsigned long long)st.wal_lost_writes,
                 (unsigned long long)st.wal_torn_bytes, round ? 0 : w->damaged,
                 round ? 0 : w->lost_writes, !round && w->torn ? "> 0" : "0");
}

/* Opens dir and checks the keys w promises have their value and the rest
 * are gone, and the recovery stats; then writes one more key, reopens and
 * checks again. */
static void check_log_keys(const char *dir, int nkeys, const log_want_t *w, const char *what)
{
    moor_engine_opts_t o;
    moor_engine_t *e = NULL;
    int round, i, rc;

    moor_engine_opts_default(&o);
    for (round = 0; round < 2; round++) {
        rc = moor_engine_open(dir, &o, &e);
        if (rc != 0)
            fail_msg("seed %llu: %s: reopen: %s (%s)", (unsigned long long)seed, what,
                     moor_err_name(rc), moor_diag_msg(rc));
        check_log_stats(e, w, round, what);
        for (i = 0; i < nkeys; i++) {
            char k[16], want[256];
            size_t wlen = value_of(want, i, 1), vlen = 0;
            void *v = NULL;
            int kept = i < w->nkept && i != w->lost;

            key_of(k, i);
            rc = moor_engine_get(e, k, strlen(k), &v, &vlen);
            if (kept && (rc != 0 || vlen != wlen || memcmp(v, want, wlen) != 0))
                fail_msg("seed %llu: %s: round %d: %s: %s, len %zu, want its value (%zu)",
                         (unsigned long long)seed, what, round, k, moor_err_name(rc), vlen, wlen);
            if (!kept && rc != MOOR_ENOTFOUND)
                fail_msg("seed %llu: %s: round %d: %s was in the damage: %s, want NOTFOUND",
                         (unsigned long long)seed, what, round, k, moor_err_name(rc));
            if (rc == 0)
                moor_engine_free(v);
        }
        if (round == 0) {
            assert_int_equal(moor_engine_put(e, "after", 5, "recovered", 9), 0);
        } else {
            void *v = NULL;
            size_t vlen = 0;

            rc = moor_engine_get(e, "after", 5, &v, &vlen);
            if (rc != 0)
                fail_msg("seed %llu: %s: write after recovery lost: %s", (unsigned long long)seed,
                         what, moor_err_name(rc));
            assert_int_equal(vlen, 9);
            assert_memory_equal(v, "recovered", 9);
            moor_engine_free(v);
        }
        assert_int_equal(moor_engine_close(e), 0);
    }
}

/* The bytes of the file at path (malloc'ed), for "left as it was". */
static char *slurp(const char *path, off_t *len)
{
    char *buf;

    *len = file_size(path);
    buf = malloc((size_t)*len + 1);
    assert_non_null(buf);
    pread_all(path, buf, (size_t)*len, 0);
    return buf;
}

/* With wal_recovery = stop: damage refuses the open with MOOR_ECORRUPT
 * naming the file and the offset, and changes nothing on disk; a torn tail
 * never refuses. */
static void check_stop_mode(const char *damaged, const char *log_name, int damage, off_t off,
                            const char *what)
{
    char dir[DIR_CAP], log[PATH_CAP];
    moor_engine_opts_t o;
    moor_engine_t *e = NULL;
    off_t before_len, after_len;
    char *before, *after, offtxt[32];
    int rc;

    /* on a copy: an open that succeeds cuts a torn tail off */
    snprintf(dir, sizeof(dir), "%s-stop", damaged);
    snprintf(log, sizeof(log), "%s/%s", dir, log_name);
    copy_dir(damaged, dir);
    before = slurp(log, &before_len);
    moor_engine_opts_default(&o);
    o.wal_recovery = MOOR_WAL_RECOVERY_STOP;
    rc = moor_engine_open(dir, &o, &e);
    if (!damage) {
        if (rc != 0)
            fail_msg("seed %llu: %s: stop mode refused a torn tail: %s", (unsigned long long)seed,
                     what, moor_diag_msg(rc));
        assert_int_equal(moor_engine_close(e), 0);
        free(before);
        return;
    }
    if (rc != MOOR_ECORRUPT)
        fail_msg("seed %llu: %s: stop mode opened (%s), want CORRUPT", (unsigned long long)seed,
                 what, moor_err_name(rc));
    assert_null(e);
    snprintf(offtxt, sizeof(offtxt), "offset %lld ", (long long)off);
    if (!strstr(moor_diag_msg(rc), log) || !strstr(moor_diag_msg(rc), offtxt) ||
        !strstr(moor_diag_msg(rc), "wal_recovery = stop"))
        fail_msg("seed %llu: %s: the message should name %s and %s: %s", (unsigned long long)seed,
                 what, log, offtxt, moor_diag_msg(rc));
    after = slurp(log, &after_len);
    assert_int_equal(after_len, before_len);
    assert_memory_equal(after, before, (size_t)before_len);
    free(before);
    free(after);
}

typedef struct log_case {
    char what[96];
    int flip; /* 1: flip the byte at off; 0: truncate the file to off */
    off_t off;
    off_t start; /* start of the record the damage is in */
    log_want_t want;
} log_case_t;

/* A flip inside record r: damage with every other key kept, unless r is
 * the last record (then a torn tail: nothing valid after it). */
static log_case_t flip_case(int r, off_t start, off_t off)
{
    if (r == NW - 1)
        return (log_case_t){"", 1, off, start, {r, -1, 0, 0, 1}};
    /* the writes lost are known from the record before; none precedes 0 */
    return (log_case_t){"", 1, off, start, {NW, r, 1, r > 0, 0}};
}

static int log_cases(const off_t *starts, log_case_t *c)
{
    static const int recs[] = {0, 1, NW / 2, NW - 2, NW - 1};
    int n = 0, j;

    for (j = 0; j < 5; j++) {
        int r = recs[j];
        off_t s = starts[r], len = starts[r + 1] - s - MOOR_WAL_HEADER;

        c[n++] = flip_case(r, s, s + 0);                          /* crc */
        c[n++] = flip_case(r, s, s + 5);                          /* length */
        c[n++] = flip_case(r, s, s + 7);                          /* length, high byte */
        c[n++] = flip_case(r, s, s + 8);                          /* type */
        c[n++] = flip_case(r, s, s + 12);                         /* seqno */
        c[n++] = flip_case(r, s, s + MOOR_WAL_HEADER + 2);        /* batch count */
        c[n++] = flip_case(r, s, s + MOOR_WAL_HEADER + len / 2);  /* payload */
        c[n++] = flip_case(r, s, starts[r + 1] - 1);              /* last byte */
        c[n++] = (log_case_t){"", 0, s + 3, s, {r, -1, 0, 0, 1}}; /* torn header */
        c[n++] = (log_case_t){"", 0, s + MOOR_WAL_HEADER + len / 2, s, {r, -1, 0, 0, 1}};
        c[n++] = (log_case_t){"", 0, starts[r + 1] - 1, s, {r, -1, 0, 0, 1}}; /* 1 byte short */
        c[n++] = (log_case_t){"", 0, s, s, {r, -1, 0, 0, 0}};                 /* clean boundary */
    }
    c[n++] = (log_case_t){"", 0, starts[NW], starts[NW], {NW, -1, 0, 0, 0}}; /* untouched */
    c[n++] = (log_case_t){"", 0, MOOR_WAL_SEGMENT_HEADER, 0, {0, -1, 0, 0, 0}};
    c[n++] = (log_case_t){"", 0, MOOR_WAL_SEGMENT_HEADER / 2, 0, {0, -1, 0, 0, 1}};
    for (j = 0; j < n; j++)
        snprintf(c[j].what, sizeof(c[j].what), "log %s at byte %lld (record starting at %lld)",
                 c[j].flip ? "flip" : "truncate", (long long)c[j].off, (long long)c[j].start);
    return n;
}

/* One byte flipped anywhere in a record with valid records after it loses
 * that record only: every acknowledged write after it is kept (the issue:
 * a flip in the middle used to drop everything after it), recovery counts
 * it, and wal_recovery = stop refuses to open instead.  A torn tail is
 * still cut off quietly. */
static void test_log_damage(void **state)
{
    char *base = testutil_tmpdir("corrupt-log");
    char pristine[DIR_CAP], work[DIR_CAP], path[PATH_CAP], *logs[16];
    off_t starts[NW + 1];
    log_case_t cases[80];
    int nlogs, ncases, i;

    (void)state;
    seed = testutil_seed("corrupt-log");
    rng = seed | 1;
    snprintf(pristine, sizeof(pristine), "%s/pristine", base);
    snprintf(work, sizeof(work), "%s/work", base);
    assert_int_equal(mkdir(pristine, 0755), 0);
    make_log_db(pristine);
    nlogs = list_files(pristine, "wal-", ".log", logs, 16);
    assert_true(nlogs >= 1);
    snprintf(path, sizeof(path), "%s/%s", pristine, logs[nlogs - 1]);
    assert_int_equal(log_records(path, starts, NW), NW);

    ncases = log_cases(starts, cases);
    for (i = 0; i < ncases; i++) {
        copy_dir(pristine, work);
        snprintf(path, sizeof(path), "%s/%s", work, logs[nlogs - 1]);
        if (cases[i].flip)
            flip_byte(path, cases[i].off);
        else
            assert_int_equal(truncate(path, cases[i].off), 0);
        check_stop_mode(work, logs[nlogs - 1], cases[i].want.damaged, cases[i].start,
                        cases[i].what);
        check_log_keys(work, NW, &cases[i].want, cases[i].what);
    }
    free_names(logs, nlogs);
    testutil_rmrf(base);
    free(base);
}

/* ---- several segments ---------------------------------------------------- */

#define NSEG 3    /* segments in the image */
#define PERSEG 60 /* one-key records per segment */

/* A crash image of NSEG segments written with the commit log's own API
 * (what an engine leaves when it dies with frozen memtables not yet
 * flushed): no MANIFEST, so open replays them all.  Key i is record i,
 * seqno i + 1; starts[s][r] is where record r of segment s begins. */
static void make_segments_db(const char *dir, off_t starts[NSEG][PERSEG + 1])
{
    moor_wal_t *w;
    int i;

    assert_int_equal(moor_wal_open(dir, 1, NULL, &w), 0);
    for (i = 0; i < NSEG * PERSEG; i++) {
        moor_batch_t *b = moor_batch_new();
        char k[16], v[256];
        size_t vlen = value_of(v, i, 1);

        if (i > 0 && i % PERSEG == 0)
            assert_int_equal(moor_wal_rotate(w, (uint64_t)(1 + i / PERSEG)), 0);
        key_of(k, i);
        assert_non_null(b);
        assert_int_equal(moor_batch_put(b, k, strlen(k), v, vlen), 0);
        assert_int_equal(moor_wal_append(w, (uint64_t)i + 1, b->rep.data, b->rep.len, NULL, NULL),
                         0);
        moor_batch_free(b);
    }
    assert_int_equal(moor_wal_close(w), 0);
    for (i = 0; i < NSEG; i++) {
        char path[PATH_CAP];
        moor_wal_segment_path(path, sizeof(path), dir, (uint64_t)i + 1);
        assert_int_equal(log_records(path, starts[i], PERSEG + 1), PERSEG);
    }
}

/* Damage in a segment that later ones follow: in its middle, in its last
 * record, or its end cut off (a sealed segment has no torn tail): every
 * valid record of it and of the later segments comes back, the damage is
 * counted, and stop mode refuses. */
static void test_log_damage_segments(void **state)
{
    char *base = testutil_tmpdir("corrupt-segs");
    char pristine[DIR_CAP], work[DIR_CAP], path[PATH_CAP];
    off_t starts[NSEG][PERSEG + 1];
    static const struct {
        int seg, rec, flip; /* flip a payload byte of the record, or cut the segment there */
    } cases[] = {{1, PERSEG / 2, 1}, {1, PERSEG - 1, 1}, {0, 0, 1}, {1, PERSEG - 1, 0}, {2, 0, 1}};
    size_t i;

    (void)state;
    seed = testutil_seed("corrupt-segs");
    rng = seed | 1;
    snprintf(pristine, sizeof(pristine), "%s/pristine", base);
    snprintf(work, sizeof(work), "%s/work", base);
    assert_int_equal(mkdir(pristine, 0755), 0);
    make_segments_db(pristine, starts);
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int seg = cases[i].seg, rec = cases[i].rec, key = seg * PERSEG + rec;
        off_t at = starts[seg][rec];
        /* seqnos lost are known from the record before the damage, in this
         * segment or the one before; none comes before the very first */
        log_want_t want = {NSEG * PERSEG, key, 1, key > 0, 0};
        char what[128];

        snprintf(what, sizeof(what), "segment %d record %d %s", seg + 1, rec,
                 cases[i].flip ? "flipped" : "cut off");
        copy_dir(pristine, work);
        moor_wal_segment_path(path, sizeof(path), work, (uint64_t)seg + 1);
        if (cases[i].flip)
            flip_byte(path, at + MOOR_WAL_HEADER + 6);
        else
            assert_int_equal(truncate(path, at + 7), 0);
        check_stop_mode(work, strrchr(path, '/') + 1, 1, at, what);
        check_log_keys(work, NSEG * PERSEG, &want, what);
    }
    testutil_rmrf(base);
    free(base);
}

/* A damaged segment header is refused at open, skipped as damage (the
 * records after it kept), or treated as a torn segment (nothing from it);
 * never a wrong value. */
static void test_log_header_flip(void **state)
{
    char *base = testutil_tmpdir("corrupt-loghdr");
    char pristine[DIR_CAP], work[DIR_CAP], path[PATH_CAP], *logs[16];
    int nlogs, off;

    (void)state;
    seed = testutil_seed("corrupt-loghdr");
    rng = seed | 1;
    snprintf(pristine, sizeof(pristine), "%s/pristine", base);
    snprintf(work, sizeof(work), "%s/work", base);
    assert_int_equal(mkdir(pristine, 0755), 0);
    make_log_db(pristine);
    nlogs = list_files(pristine, "wal-", ".log", logs, 16);
    assert_true(nlogs >= 1);
    for (off = 0; off < MOOR_WAL_SEGMENT_HEADER; off += 5) {
        moor_engine_opts_t o;
        moor_engine_t *e = NULL;
        int i, rc;

        copy_dir(pristine, work);
        snprintf(path, sizeof(path), "%s/%s", work, logs[nlogs - 1]);
        flip_byte(path, off);
        moor_engine_opts_default(&o);
        rc = moor_engine_open(work, &o, &e);
        if (rc != 0) {
            assert_true(rc < 0);
            assert_null(e);
            continue;
        }
        for (i = 0; i < NW; i++) {
            char k[16], want[256];
            size_t wlen = value_of(want, i, 1), vlen = 0;
            void *v = NULL;

            key_of(k, i);
            rc = moor_engine_get(e, k, strlen(k), &v, &vlen);
            if (rc == 0 && (vlen != wlen || memcmp(v, want, wlen) != 0))
                fail_msg("seed %llu: header flip at %d: %s has a wrong value",
                         (unsigned long long)seed, off, k);
            if (rc != 0 && rc != MOOR_ENOTFOUND)
                fail_msg("seed %llu: header flip at %d: get %s: %s", (unsigned long long)seed, off,
                         k, moor_err_name(rc));
            if (rc == 0)
                moor_engine_free(v);
        }
        moor_engine_close(e);
    }
    free_names(logs, nlogs);
    testutil_rmrf(base);
    free(base);
}

/* ---- locking ---------------------------------------------------------- */

static void test_lock_busy(void **state)
{
    char *dir = testutil_tmpdir("corrupt-lock");
    moor_engine_opts_t o;
    moor_engine_t *e = NULL, *e2 = (moor_engine_t *)0x1;
    pid_t pid;
    int status;

    (void)state;
    moor_engine_opts_default(&o);
    assert_int_equal(moor_engine_open(dir, &o, &e), 0);
    assert_int_equal(moor_engine_put(e, "k", 1, "v", 1), 0);

    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        moor_engine_t *c = NULL;
        int rc = moor_engine_open(dir, &o, &c);

        _exit(rc == MOOR_EBUSY && c == NULL ? 0 : 1);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0); /* the other process got MOOR_EBUSY */

    /* The same process opening it twice would corrupt it just the same. */
    assert_int_equal(moor_engine_open(dir, &o, &e2), MOOR_EBUSY);
    assert_null(e2);

    assert_int_equal(moor_engine_close(e), 0);
    e = NULL;
    assert_int_equal(moor_engine_open(dir, &o, &e), 0); /* released on close */
    assert_int_equal(moor_engine_close(e), 0);
    testutil_rmrf(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lock_busy),           cmocka_unit_test(test_log_damage),
        cmocka_unit_test(test_log_damage_segments), cmocka_unit_test(test_log_header_flip),
        cmocka_unit_test(test_sst_flips),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
