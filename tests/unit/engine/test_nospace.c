/*
 * test_nospace.c -- the engine on a full disk (a real tmpfs of a few MiB,
 * in a mount namespace of the test's own, so it vanishes with the process;
 * the tests skip where mounting is impossible).
 *
 * The commit log runs out of space: the put that does not fit gets
 * MOOR_ENOSPC (never MOOR_EFAILED), later puts get it at once, reads go
 * on, stats say no_space and not read_only; once a filler file is removed,
 * puts succeed again with no reopen, and after a reopen every put that was
 * answered 0 is there with its value (a put answered MOOR_ENOSPC may be
 * there too, with its value, or absent).  The same with the writer killed
 * (-9) while the disk is full: the log it leaves has no damage.
 *
 * A flush runs out of space: the frozen memtable stays (no half table is
 * left in the directory), moor_engine_flush says MOOR_ENOSPC, writes go on
 * until the memtables are full and then get MOOR_ENOSPC instead of waiting
 * forever; once space is back the background thread's retry flushes and
 * writes succeed again, no reopen.
 */
#include "testutil.h" /* first: it sets _GNU_SOURCE */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <sys/statvfs.h>
#include <sys/wait.h>

#include "engine/engine.h"
#include "util/err.h"

#define MAXKEYS 20000
#define WAIT_MS 20000 /* bound on waiting for space to be noticed again */

static char *g_fs; /* the tmpfs of the running test */

static int fs_setup(void **state)
{
    (void)state;
    g_fs = testutil_tmpfs_mount("nospace", 4u << 20);
    return 0;
}

static int fs_teardown(void **state)
{
    (void)state;
    testutil_tmpfs_umount(g_fs);
    g_fs = NULL;
    return 0;
}

static void key_of(char *k, int i)
{
    snprintf(k, 24, "key%07d", i);
}

static size_t value_of(char *v, int i, size_t len)
{
    uint64_t x = (uint64_t)i * 0x9e3779b97f4a7c15u + 1;

    for (size_t j = 0; j < len; j++) {
        x = x * 6364136223846793005u + 1442695040888963407u;
        v[j] = (char)(x >> 33);
    }
    return len;
}

/* Fills the filesystem with dir/filler, leaving about `room` bytes. */
static void fill(const char *dir, size_t room)
{
    char path[4200], buf[4096];
    struct statvfs sv;
    uint64_t avail;
    int fd;

    snprintf(path, sizeof(path), "%s/filler", dir);
    fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    assert_true(fd >= 0);
    memset(buf, 0x5a, sizeof(buf));
    assert_int_equal(statvfs(dir, &sv), 0);
    for (avail = (uint64_t)sv.f_bavail * sv.f_bsize; avail > room + sizeof(buf);
         avail -= sizeof(buf))
        if (write(fd, buf, sizeof(buf)) != (ssize_t)sizeof(buf))
            break;
    close(fd);
}

static void unfill(const char *dir)
{
    char path[4200];

    snprintf(path, sizeof(path), "%s/filler", dir);
    assert_int_equal(unlink(path), 0);
}

static moor_engine_t *open_db(const char *dir, size_t memtable, unsigned max_frozen)
{
    moor_engine_opts_t o;
    moor_engine_t *e = NULL;
    int rc;

    moor_engine_opts_default(&o);
    o.sync_mode = MOOR_SYNC_ALWAYS;
    o.memtable_bytes = memtable;
    o.max_frozen = max_frozen;
    o.compression_level = 0;
    o.cache_bytes = 1u << 20;
    rc = moor_engine_open(dir, &o, &e);
    if (rc)
        fail_msg("open %s: %s", dir, moor_diag_msg(rc));
    return e;
}

static int put(moor_engine_t *e, int i, size_t vlen)
{
    char k[24], v[2048];

    key_of(k, i);
    return moor_engine_put(e, k, strlen(k), v, value_of(v, i, vlen));
}

/* Checks key i: must hold its value if `must`, else may be absent. */
static void check_key(moor_engine_t *e, int i, size_t vlen, int must, const char *what)
{
    char k[24], want[2048];
    void *v = NULL;
    size_t len = 0;
    int rc;

    key_of(k, i);
    value_of(want, i, vlen);
    rc = moor_engine_get(e, k, strlen(k), &v, &len);
    if (rc == MOOR_ENOTFOUND && !must)
        return;
    if (rc != 0 || len != vlen || memcmp(v, want, vlen) != 0)
        fail_msg("%s: key %d: %s, %zu bytes (want %zu)", what, i, moor_err_name(rc), len, vlen);
    moor_engine_free(v);
}

/* Puts key i until it succeeds (space was freed), bounded; returns how
 * many tries it took. */
static int put_until_ok(moor_engine_t *e, int i, size_t vlen)
{
    int rc = -1, tries;

    for (tries = 1; tries <= WAIT_MS / 20; tries++) {
        rc = put(e, i, vlen);
        if (rc == 0)
            return tries;
        assert_int_equal(rc, MOOR_ENOSPC);
        usleep(20 * 1000);
    }
    fail_msg("key %d: still %s after %d ms with space freed: %s", i, moor_err_name(rc), WAIT_MS,
             moor_diag_msg(rc));
    return 0;
}

static void expect_stats(moor_engine_t *e, int no_space)
{
    moor_engine_stats_t st;

    moor_engine_stats(e, &st);
    assert_int_equal(st.no_space, no_space);
    assert_int_equal(st.read_only, 0);
}

/* ---- the commit log runs out of space ---------------------------------- */

static void test_log_full(void **state)
{
    char dir[4200];
    moor_engine_t *e;
    int i, failed = -1, rc, tries;

    (void)state;
    if (!g_fs)
        skip();
    snprintf(dir, sizeof(dir), "%s/db", g_fs);
    e = open_db(dir, 8u << 20, 2); /* no flush: only the log takes space */
    fill(g_fs, 200 * 1024);
    for (i = 0; i < MAXKEYS && failed < 0; i++) {
        rc = put(e, i, 1000);
        if (rc == MOOR_ENOSPC)
            failed = i;
        else if (rc != 0)
            fail_msg("put %d: %s (%s), want 0 or ENOSPC", i, moor_err_name(rc), moor_diag_msg(rc));
    }
    assert_true(failed > 0);
    /* full: refused at once, reads go on, and the engine is not read-only */
    rc = put(e, failed + 1, 1000);
    assert_int_equal(rc, MOOR_ENOSPC);
    assert_non_null(strstr(moor_diag_msg(rc), "commit log is out of disk space"));
    expect_stats(e, 1);
    for (i = 0; i < failed; i++)
        check_key(e, i, 1000, 1, "while full");

    unfill(g_fs);
    tries = put_until_ok(e, failed + 1, 1000);
    printf("log full: %d puts acknowledged, writes again after %d tries\n", failed, tries);
    for (i = failed + 2; i < failed + 200; i++)
        assert_int_equal(put(e, i, 1000), 0);
    expect_stats(e, 0);
    assert_int_equal(moor_engine_close(e), 0);

    e = open_db(dir, 8u << 20, 2);
    for (i = 0; i < failed + 200; i++)
        check_key(e, i, 1000, i != failed, "after reopen");
    assert_int_equal(moor_engine_close(e), 0);
}

/* The writer dies (-9) while the disk is full: the log it leaves is whole,
 * with every acknowledged put and no damage. */
static void test_log_full_crash(void **state)
{
    char dir[4200];
    int p[2], status, failed = -1;
    moor_engine_stats_t st;
    moor_engine_t *e;
    pid_t pid;

    (void)state;
    if (!g_fs)
        skip();
    snprintf(dir, sizeof(dir), "%s/db", g_fs);
    assert_int_equal(pipe(p), 0);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        moor_engine_opts_t o;
        moor_engine_t *c = NULL;
        int i, rc = 0;

        moor_engine_opts_default(&o);
        o.sync_mode = MOOR_SYNC_ALWAYS;
        if (moor_engine_open(dir, &o, &c))
            _exit(2);
        fill(g_fs, 150 * 1024);
        for (i = 0; i < MAXKEYS && (rc = put(c, i, 1000)) == 0; i++)
            ;
        if (rc != MOOR_ENOSPC)
            _exit(3);
        if (write(p[1], &i, sizeof(i)) != sizeof(i))
            _exit(4);
        usleep(100 * 1000); /* a retry or two against the full disk */
        kill(getpid(), SIGKILL);
        _exit(5);
    }
    close(p[1]);
    assert_int_equal(read(p[0], &failed, sizeof(failed)), sizeof(failed));
    close(p[0]);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_true(failed > 0);
    unfill(g_fs);
    e = open_db(dir, 64u << 20, 2);
    moor_engine_stats(e, &st);
    assert_int_equal(st.wal_damaged, 0);
    for (int i = 0; i <= failed; i++)
        check_key(e, i, 1000, i < failed, "after the crash");
    assert_int_equal(moor_engine_close(e), 0);
}

/* ---- a flush runs out of space ----------------------------------------- */

/* Table files in dir (a half-written one would be here). */
static int count_tables(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int n = 0;

    assert_non_null(d);
    while ((de = readdir(d)))
        n += strstr(de->d_name, ".sst") != NULL;
    closedir(d);
    return n;
}

static void test_flush_full(void **state)
{
    char dir[4200];
    moor_engine_t *e;
    int i, rc, tries, stop = -1;
    size_t bigv = 1u << 20;
    char *bv = malloc(bigv);

    (void)state;
    if (!g_fs)
        skip();
    assert_non_null(bv);
    snprintf(dir, sizeof(dir), "%s/db", g_fs);
    /* a 1 MiB value overfills a 64 KiB memtable: its table needs far more
     * room than the next memtable's log, so the flush is what fails */
    e = open_db(dir, 64 * 1024, 1);
    value_of(bv, -1, bigv);
    assert_int_equal(moor_engine_put(e, "big", 3, bv, bigv), 0);
    fill(g_fs, 400 * 1024);
    rc = moor_engine_flush(e);
    assert_int_equal(rc, MOOR_ENOSPC);
    assert_non_null(strstr(moor_diag_msg(rc), "flush"));
    assert_int_equal(count_tables(dir), 0); /* nothing half-written is left */
    expect_stats(e, 1);

    /* writes go on into the next memtable until it is full, then hear why */
    for (i = 0; i < MAXKEYS && stop < 0; i++) {
        rc = put(e, i, 100);
        if (rc == MOOR_ENOSPC)
            stop = i;
        else
            assert_int_equal(rc, 0);
    }
    assert_true(stop > 0);
    assert_non_null(strstr(moor_diag_msg(rc), "memtables are full"));
    assert_int_equal(count_tables(dir), 0);
    for (i = 0; i < stop; i++)
        check_key(e, i, 100, 1, "while flushes fail");
    {
        void *v = NULL;
        size_t vlen = 0;
        assert_int_equal(moor_engine_get(e, "big", 3, &v, &vlen), 0);
        assert_int_equal(vlen, bigv);
        assert_memory_equal(v, bv, bigv);
        moor_engine_free(v);
    }

    unfill(g_fs);
    tries = put_until_ok(e, stop, 100);
    printf("flush full: %d puts acknowledged, writes again after %d tries\n", stop, tries);
    for (i = stop + 1; i < stop + 2000; i++)
        assert_int_equal(put(e, i, 100), 0);
    assert_int_equal(moor_engine_flush(e), 0);
    assert_true(count_tables(dir) > 0);
    expect_stats(e, 0);
    assert_int_equal(moor_engine_close(e), 0);

    e = open_db(dir, 64 * 1024, 1);
    for (i = 0; i < stop + 2000; i++)
        check_key(e, i, 100, 1, "after reopen");
    assert_int_equal(moor_engine_close(e), 0);
    free(bv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_log_full, fs_setup, fs_teardown),
        cmocka_unit_test_setup_teardown(test_log_full_crash, fs_setup, fs_teardown),
        cmocka_unit_test_setup_teardown(test_flush_full, fs_setup, fs_teardown),
    };

    testutil_tmpfs_init();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
