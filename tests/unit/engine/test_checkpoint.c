/*
 * test_checkpoint.c -- moor_engine_checkpoint: a consistent copy taken
 * while writes go on.
 *
 * Tables and memtable: with data in tables (flushed), in a frozen or
 * active memtable, and deletes, the copy opened as a database holds every
 * write made before the call with its value and none made after it; the
 * live database is unharmed and its tables are shared (hard links).
 * Under load: a writer thread puts keys in order while the main thread
 * takes checkpoints; each copy holds every key acknowledged before the
 * call, and (one writer, in order) the keys it holds are a prefix.
 * Errors: an existing directory is MOOR_EEXIST; a full disk is
 * MOOR_ENOSPC with nothing left behind, and the engine goes on.
 */
#include "testutil.h" /* first: it sets _GNU_SOURCE */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/statvfs.h>

#include "engine/engine.h"
#include "util/err.h"

static void key_of(char *k, int i)
{
    snprintf(k, 24, "key%07d", i);
}

static size_t value_of(char *v, int i, int gen)
{
    return (size_t)snprintf(v, 64, "value-%d-gen-%d-%0*d", i, gen, 10 + i % 30, 7);
}

static moor_engine_t *open_db(const char *dir, size_t memtable)
{
    moor_engine_opts_t o;
    moor_engine_t *e = NULL;
    int rc;

    moor_engine_opts_default(&o);
    o.memtable_bytes = memtable;
    o.create_if_missing = 1;
    o.cache_bytes = 1u << 20;
    rc = moor_engine_open(dir, &o, &e);
    if (rc)
        fail_msg("open %s: %s", dir, moor_diag_msg(rc));
    return e;
}

static void put(moor_engine_t *e, int i, int gen)
{
    char k[24], v[64];
    int rc;

    key_of(k, i);
    rc = moor_engine_put(e, k, strlen(k), v, value_of(v, i, gen));
    if (rc)
        fail_msg("put %d: %s", i, moor_diag_msg(rc));
}

/* gen 0: key i must be absent; else it must hold its value of gen. */
static void expect(moor_engine_t *e, int i, int gen)
{
    char k[24], want[64];
    size_t wlen = value_of(want, i, gen), len = 0;
    void *v = NULL;
    int rc;

    key_of(k, i);
    rc = moor_engine_get(e, k, strlen(k), &v, &len);
    if (gen == 0) {
        if (rc != MOOR_ENOTFOUND)
            fail_msg("key %d: want absent, got rc %d", i, rc);
        return;
    }
    if (rc != 0 || len != wlen || memcmp(v, want, wlen) != 0)
        fail_msg("key %d: want '%.*s', got rc %d '%.*s'", i, (int)wlen, want, rc, (int)len,
                 v ? (const char *)v : "");
    moor_engine_free(v);
}

static void test_tables_and_memtable(void **state)
{
    char *dir = testutil_tmpdir("ckpt"), db[4200], ck[4200], ck2[4200];
    moor_engine_checkpoint_t st;
    moor_engine_stats_t es;
    moor_engine_t *e;
    int rc;

    (void)state;
    snprintf(db, sizeof(db), "%s/db", dir);
    snprintf(ck, sizeof(ck), "%s/db/snap", dir);
    snprintf(ck2, sizeof(ck2), "%s/ck2", dir);
    e = open_db(db, 64u << 10);
    for (int i = 0; i < 3000; i++) /* several tables */
        put(e, i, 1);
    assert_int_equal(moor_engine_flush(e), 0);
    for (int i = 0; i < 3000; i += 3) /* in the memtable: overwrites */
        put(e, i, 2);
    for (int i = 1; i < 3000; i += 7) {
        char k[24];
        key_of(k, i);
        assert_int_equal(moor_engine_delete(e, k, strlen(k)), 0);
    }
    moor_engine_stats(e, &es);
    assert_true(es.tables[0] + es.tables[1] + es.tables[2] > 0);
    assert_true(es.memtable_bytes > 0);

    rc = moor_engine_checkpoint(e, ck, &st);
    if (rc)
        fail_msg("checkpoint: %s", moor_diag_msg(rc));
    assert_true(st.tables > 0);
    assert_true(st.linked_bytes > 0); /* same filesystem: links */
    assert_true(st.copied_bytes > 0); /* the memtable's log */
    assert_int_equal(moor_engine_checkpoint(e, ck, &st), MOOR_EEXIST);

    /* after the checkpoint: invisible in it */
    for (int i = 0; i < 3000; i += 5)
        put(e, i, 3);
    put(e, 5000, 3);
    assert_int_equal(moor_engine_flush(e), 0);
    assert_int_equal(moor_engine_compact_range(e, NULL, 0, NULL, 0), 0);
    assert_int_equal(moor_engine_close(e), 0);

    /* a copy of the copy, taken from its own engine, is the same data */
    e = open_db(ck, 64u << 10);
    rc = moor_engine_checkpoint(e, ck2, &st);
    if (rc)
        fail_msg("checkpoint of the copy: %s", moor_diag_msg(rc));
    assert_int_equal(moor_engine_close(e), 0);
    for (int pass = 0; pass < 2; pass++) {
        e = open_db(pass ? ck2 : ck, 64u << 10);
        for (int i = 0; i < 3000; i++)
            expect(e, i, i % 7 == 1 ? 0 : i % 3 == 0 ? 2 : 1);
        expect(e, 5000, 0);
        assert_int_equal(moor_engine_close(e), 0);
    }
    /* the live database kept its own writes */
    e = open_db(db, 64u << 10);
    for (int i = 0; i < 3000; i++)
        expect(e, i, i % 5 == 0 ? 3 : i % 7 == 1 ? 0 : i % 3 == 0 ? 2 : 1);
    expect(e, 5000, 3);
    assert_int_equal(moor_engine_close(e), 0);
    testutil_rmrf(dir);
    free(dir);
}

typedef struct load {
    moor_engine_t *e;
    atomic_int acked; /* keys 0..acked-1 are acknowledged */
    atomic_int stop;
} load_t;

static void *writer(void *arg)
{
    load_t *l = arg;

    for (int i = 0; !atomic_load(&l->stop) && i < 200000; i++) {
        char k[24], v[64];
        key_of(k, i);
        if (moor_engine_put(l->e, k, strlen(k), v, value_of(v, i, 1)) != 0)
            break;
        atomic_store(&l->acked, i + 1);
    }
    return NULL;
}

static void test_under_load(void **state)
{
    char *dir = testutil_tmpdir("ckptload"), db[4200], ck[4][4200];
    int before[4];
    moor_engine_checkpoint_t st;
    load_t l;
    pthread_t th;

    (void)state;
    snprintf(db, sizeof(db), "%s/db", dir);
    l.e = open_db(db, 32u << 10); /* small: freezes and flushes during the copies */
    atomic_init(&l.acked, 0);
    atomic_init(&l.stop, 0);
    assert_int_equal(pthread_create(&th, NULL, writer, &l), 0);
    for (int c = 0; c < 4; c++) {
        int target = (c + 1) * 2000;
        while (atomic_load(&l.acked) < target)
            usleep(1000);
        snprintf(ck[c], sizeof(ck[c]), "%s/db/ck%d", dir, c);
        before[c] = atomic_load(&l.acked);
        assert_int_equal(moor_engine_checkpoint(l.e, ck[c], &st), 0);
    }
    atomic_store(&l.stop, 1);
    pthread_join(th, NULL);
    assert_int_equal(moor_engine_close(l.e), 0);
    for (int c = 0; c < 4; c++) {
        moor_engine_t *e = open_db(ck[c], 32u << 10);
        int n = 0;
        moor_engine_iter_t *it = moor_engine_iter_new(e, NULL, 0, NULL, 0);
        for (moor_engine_iter_seek_first(it); moor_engine_iter_valid(it); moor_engine_iter_next(it))
            n++;
        assert_int_equal(moor_engine_iter_status(it), 0);
        moor_engine_iter_free(it);
        if (n < before[c])
            fail_msg("checkpoint %d: %d keys, %d were acknowledged before it", c, n, before[c]);
        for (int i = 0; i < n; i++) /* a prefix: every key below n, with its value */
            expect(e, i, 1);
        expect(e, n, 0);
        assert_int_equal(moor_engine_close(e), 0);
    }
    testutil_rmrf(dir);
    free(dir);
}

static void test_no_space(void **state)
{
    char *fs = testutil_tmpfs_mount("ckptfull", 4u << 20), db[4200], ck[4200], path[4200];
    char buf[4096];
    moor_engine_checkpoint_t st;
    struct statvfs sv;
    moor_engine_t *e;
    int fd;

    (void)state;
    if (!fs)
        skip();
    snprintf(db, sizeof(db), "%s/db", fs);
    snprintf(ck, sizeof(ck), "%s/db/ck", fs);
    e = open_db(db, 1u << 20);
    for (int i = 0; i < 5000; i++) /* all in the memtable: the copy needs room */
        put(e, i, 1);
    snprintf(path, sizeof(path), "%s/filler", fs);
    fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    assert_true(fd >= 0);
    memset(buf, 0x5a, sizeof(buf));
    while (statvfs(fs, &sv) == 0 && (uint64_t)sv.f_bavail * sv.f_bsize > 8192 &&
           write(fd, buf, sizeof(buf)) == (ssize_t)sizeof(buf))
        ;
    close(fd);
    assert_int_equal(moor_engine_checkpoint(e, ck, &st), MOOR_ENOSPC);
    assert_int_equal(access(ck, F_OK), -1); /* the partial copy is gone */
    assert_int_equal(unlink(path), 0);
    assert_int_equal(moor_engine_checkpoint(e, ck, &st), 0);
    assert_int_equal(moor_engine_close(e), 0);
    e = open_db(ck, 1u << 20);
    for (int i = 0; i < 5000; i += 97)
        expect(e, i, 1);
    assert_int_equal(moor_engine_close(e), 0);
    testutil_tmpfs_umount(fs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tables_and_memtable),
        cmocka_unit_test(test_under_load),
        cmocka_unit_test(test_no_space),
    };

    testutil_tmpfs_init();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
