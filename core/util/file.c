/*
 * file.c -- whole writes, directory fsync and atomic file replacement
 * (file.h).  Plain system calls, no state; every failure leaves a
 * diagnostic naming the file and the operation.
 */
#include "file.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "err.h"

#define FILE_TMP_SUFFIX ".tmp"

int moor_file_write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    size_t done = 0;

    while (done < n) {
        ssize_t w = write(fd, c + done, n - done);

        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return moor_diag(-errno, "write of %zu bytes failed after %zu: %s", n, done,
                             strerror(errno));
        if (w == 0)
            return moor_diag(MOOR_EIO, "write of %zu bytes wrote nothing after %zu", n, done);
        done += (size_t)w;
    }
    return 0;
}

int moor_file_pwrite_all(int fd, const void *p, size_t n, uint64_t off)
{
    const char *c = p;
    size_t done = 0;

    while (done < n) {
        ssize_t w = pwrite(fd, c + done, n - done, (off_t)(off + done));

        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return moor_diag(-errno, "write of %zu bytes at offset %llu failed after %zu: %s", n,
                             (unsigned long long)off, done, strerror(errno));
        if (w == 0)
            return moor_diag(MOOR_EIO, "write of %zu bytes at offset %llu wrote nothing after %zu",
                             n, (unsigned long long)off, done);
        done += (size_t)w;
    }
    return 0;
}

int moor_file_sync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = 0;

    if (fd < 0)
        return moor_diag(-errno, "open directory %s: %s", dir, strerror(errno));
    if (fsync(fd) != 0)
        rc = moor_diag(-errno, "fsync directory %s: %s", dir, strerror(errno));
    close(fd);
    return rc;
}

/* The directory holding path ("." for a bare name, "/" for /name). */
static int parent_dir(const char *path, char *out, size_t cap)
{
    const char *slash = strrchr(path, '/');
    size_t n = slash ? (size_t)(slash - path) : 0;

    if (!slash)
        return snprintf(out, cap, ".") < (int)cap ? 0 : MOOR_EINVAL;
    if (n == 0)
        n = 1; /* the root directory */
    if (n >= cap)
        return moor_diag(MOOR_EINVAL, "path %s is too long", path);
    memcpy(out, path, n);
    out[n] = '\0';
    return 0;
}

/* Writes data to tmp (created or truncated), fdatasyncs and closes it.
 * The caller removes tmp on failure. */
static int write_tmp(const char *tmp, const void *data, size_t len)
{
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int rc;

    if (fd < 0)
        return moor_diag(-errno, "create %s: %s", tmp, strerror(errno));
    rc = moor_file_write_all(fd, data, len);
    if (rc) {
        moor_diag_wrap(rc, rc, "%s", tmp);
        close(fd);
        return rc;
    }
    if (fdatasync(fd) != 0) {
        rc = moor_diag(-errno, "fdatasync %s: %s", tmp, strerror(errno));
        close(fd);
        return rc;
    }
    /* Some filesystems (NFS) report delayed write errors only at close. */
    if (close(fd) != 0)
        return moor_diag(-errno, "close %s: %s", tmp, strerror(errno));
    return 0;
}

int moor_file_replace(const char *path, const void *data, size_t len)
{
    char tmp[PATH_MAX], dir[PATH_MAX];
    int rc;

    if (snprintf(tmp, sizeof(tmp), "%s" FILE_TMP_SUFFIX, path) >= (int)sizeof(tmp))
        return moor_diag(MOOR_EINVAL, "path %s is too long", path);
    if ((rc = parent_dir(path, dir, sizeof(dir))))
        return rc;
    if ((rc = write_tmp(tmp, data, len))) {
        unlink(tmp);
        return rc;
    }
    if (rename(tmp, path) != 0) {
        rc = moor_diag(-errno, "rename %s to %s: %s", tmp, path, strerror(errno));
        unlink(tmp);
        return rc;
    }
    return moor_file_sync_dir(dir);
}
