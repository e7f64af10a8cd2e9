/*
 * test_file.c -- whole writes, directory fsync and atomic replacement:
 * a replaced file holds exactly the new bytes and no temporary file is
 * left; a replacement that fails (the temporary name taken by a directory,
 * a missing directory, a full disk on a small tmpfs) leaves the old file
 * byte for byte as it was, removes its temporary file and says why, naming
 * the file.  Short writes: a pipe written by a thread while the test reads
 * it slowly forces write(2) to return less than asked.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>

#include "testutil.h"
#include "util/err.h"
#include "util/file.h"

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    long n;

    if (!f)
        return NULL;
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    n = ftell(f);
    rewind(f);
    buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void assert_content(const char *path, const void *want, size_t wlen)
{
    size_t len = 0;
    char *got = slurp(path, &len);

    assert_non_null(got);
    assert_int_equal(len, wlen);
    assert_memory_equal(got, want, wlen);
    free(got);
}

static int exists(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0;
}

static void test_replace_roundtrip(void **state)
{
    char *dir = testutil_tmpdir("file-rt");
    char path[4200], tmp[4300], big[100000];

    (void)state;
    snprintf(path, sizeof(path), "%s/STATE", dir);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    assert_int_equal(moor_file_replace(path, "first", 5), 0);
    assert_content(path, "first", 5);
    assert_false(exists(tmp));
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (char)(i * 7 + 3);
    assert_int_equal(moor_file_replace(path, big, sizeof(big)), 0);
    assert_content(path, big, sizeof(big));
    assert_int_equal(moor_file_replace(path, "", 0), 0); /* empty is a content too */
    assert_content(path, "", 0);
    assert_false(exists(tmp));

    /* a stale temporary file from a crash is simply overwritten */
    assert_int_equal(moor_file_replace(tmp, "stale junk", 10), 0);
    assert_int_equal(moor_file_replace(path, "second", 6), 0);
    assert_content(path, "second", 6);
    assert_false(exists(tmp));

    /* a bare name is relative to the working directory */
    {
        char cwd[4096];
        assert_non_null(getcwd(cwd, sizeof(cwd)));
        assert_int_equal(chdir(dir), 0);
        assert_int_equal(moor_file_replace("BARE", "x", 1), 0);
        assert_int_equal(chdir(cwd), 0);
        snprintf(path, sizeof(path), "%s/BARE", dir);
        assert_content(path, "x", 1);
    }
    testutil_rmrf(dir);
    free(dir);
}

/* The temporary name is taken by a directory: open fails, the old file
 * stays as it was, and the diagnostic names the temporary file. */
static void test_replace_failure_keeps_old(void **state)
{
    char *dir = testutil_tmpdir("file-fail");
    char path[4200], tmp[4300], missing[4300];
    int rc;

    (void)state;
    snprintf(path, sizeof(path), "%s/STATE", dir);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    assert_int_equal(moor_file_replace(path, "old", 3), 0);
    assert_int_equal(mkdir(tmp, 0755), 0);
    rc = moor_file_replace(path, "new content", 11);
    assert_int_equal(rc, -EISDIR);
    assert_non_null(strstr(moor_diag_msg(rc), tmp));
    assert_content(path, "old", 3);
    assert_int_equal(rmdir(tmp), 0);

    snprintf(missing, sizeof(missing), "%s/no/such/dir/STATE", dir);
    rc = moor_file_replace(missing, "x", 1);
    assert_int_equal(rc, MOOR_ENOENT);
    assert_non_null(strstr(moor_diag_msg(rc), "no/such/dir/STATE.tmp"));

    assert_int_equal(moor_file_sync_dir(dir), 0);
    rc = moor_file_sync_dir(missing);
    assert_int_equal(rc, MOOR_ENOENT);
    assert_non_null(strstr(moor_diag_msg(rc), missing));
    testutil_rmrf(dir);
    free(dir);
}

static char *g_tmpfs;

static int tmpfs_setup(void **state)
{
    (void)state;
    g_tmpfs = testutil_tmpfs_mount("file-tmpfs", 256 * 1024);
    return 0;
}

static int tmpfs_teardown(void **state)
{
    (void)state;
    testutil_tmpfs_umount(g_tmpfs);
    g_tmpfs = NULL;
    return 0;
}

/* A real full disk: the replacement fails with MOOR_ENOSPC, the old file
 * is intact, no temporary file is left, and once space is freed the same
 * replacement succeeds. */
static void test_replace_enospc(void **state)
{
    char path[4200], tmp[4300], filler[4200];
    size_t big = 200 * 1024;
    char *data;
    int rc, fd;

    (void)state;
    if (!g_tmpfs)
        skip();
    snprintf(path, sizeof(path), "%s/STATE", g_tmpfs);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    snprintf(filler, sizeof(filler), "%s/filler", g_tmpfs);
    assert_int_equal(moor_file_replace(path, "old", 3), 0);
    fd = open(filler, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    data = calloc(1, big);
    assert_non_null(data);
    assert_int_equal(moor_file_write_all(fd, data, 120 * 1024), 0);
    close(fd);

    rc = moor_file_replace(path, data, big);
    assert_int_equal(rc, MOOR_ENOSPC);
    assert_non_null(strstr(moor_diag_msg(rc), tmp));
    assert_content(path, "old", 3);
    assert_false(exists(tmp));

    assert_int_equal(unlink(filler), 0);
    assert_int_equal(moor_file_replace(path, data, big), 0);
    assert_content(path, data, big);
    assert_false(exists(tmp));
    free(data);
}

/* ---- short writes ------------------------------------------------------ */

typedef struct pipe_job {
    int fd;
    const char *data;
    size_t len, off;
    int pwrite, rc;
} pipe_job_t;

static void *writer_main(void *arg)
{
    pipe_job_t *j = arg;

    j->rc = moor_file_write_all(j->fd, j->data, j->len);
    close(j->fd);
    return NULL;
}

/* A pipe takes at most its capacity per write(2) while nobody reads:
 * 1 MiB through a 64 KiB pipe needs many short writes. */
static void test_write_all_short_writes(void **state)
{
    size_t len = 1u << 20, got = 0;
    char *data = malloc(len), *back = malloc(len);
    pipe_job_t j = {0};
    pthread_t t;
    int p[2];

    (void)state;
    assert_non_null(data);
    assert_non_null(back);
    for (size_t i = 0; i < len; i++)
        data[i] = (char)(i * 31 + (i >> 9));
    assert_int_equal(pipe(p), 0);
    j.fd = p[1];
    j.data = data;
    j.len = len;
    assert_int_equal(pthread_create(&t, NULL, writer_main, &j), 0);
    while (got < len) {
        ssize_t r = read(p[0], back + got, len - got < 777 ? len - got : 777);
        assert_true(r > 0);
        got += (size_t)r;
    }
    pthread_join(t, NULL);
    close(p[0]);
    assert_int_equal(j.rc, 0);
    assert_memory_equal(back, data, len);
    free(data);
    free(back);
}

static void test_pwrite_all(void **state)
{
    char *dir = testutil_tmpdir("file-pw");
    char path[4200];
    int fd, rc;

    (void)state;
    snprintf(path, sizeof(path), "%s/f", dir);
    fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(moor_file_pwrite_all(fd, "abcdef", 6, 0), 0);
    assert_int_equal(moor_file_pwrite_all(fd, "XY", 2, 2), 0);
    close(fd);
    assert_content(path, "abXYef", 6);
    fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    rc = moor_file_pwrite_all(fd, "z", 1, 0); /* not open for writing */
    assert_int_equal(rc, -EBADF);
    assert_non_null(strstr(moor_diag_msg(rc), "at offset 0"));
    rc = moor_file_write_all(fd, "z", 1);
    assert_true(rc < 0);
    assert_non_null(strstr(moor_diag_msg(rc), "write of 1 bytes"));
    close(fd);
    testutil_rmrf(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_replace_roundtrip),
        cmocka_unit_test(test_replace_failure_keeps_old),
        cmocka_unit_test_setup_teardown(test_replace_enospc, tmpfs_setup, tmpfs_teardown),
        cmocka_unit_test(test_write_all_short_writes),
        cmocka_unit_test(test_pwrite_all),
    };

    testutil_tmpfs_init();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
