/*
 * testutil.h -- shared helpers of the C unit tests (header-only).
 * TEST: temporary directories under $MOOR_TEST_TMP (or /tmp), removed on
 * success; a seed from $MOOR_SEED or the clock, always printed; small
 * tmpfs filesystems for tests of a full disk.
 */
#ifndef MOOR_TESTUTIL_H
#define MOOR_TESTUTIL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <ftw.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int testutil_rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

/* rm -rf path; ignores errors. */
static inline void testutil_rmrf(const char *path)
{
    nftw(path, testutil_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

/* Makes a fresh directory and returns its path (static buffer per call
 * site is not needed: the result is malloc'ed; free it). */
static inline char *testutil_tmpdir(const char *tag)
{
    const char *base = getenv("MOOR_TEST_TMP");
    char *path = malloc(4096);

    if (!base || !*base)
        base = "/tmp";
    mkdir(base, 0755);
    snprintf(path, 4096, "%s/%s-XXXXXX", base, tag);
    if (!mkdtemp(path)) {
        perror("mkdtemp");
        abort();
    }
    return path;
}

/* Seed from $MOOR_SEED, else from the clock; printed so a failure replays. */
static inline uint64_t testutil_seed(const char *what)
{
    const char *s = getenv("MOOR_SEED");
    uint64_t seed;

    if (s && *s) {
        seed = strtoull(s, NULL, 0);
    } else {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        seed = (uint64_t)ts.tv_sec * 1000003u ^ (uint64_t)ts.tv_nsec ^ (uint64_t)getpid();
    }
    fprintf(stderr, "%s: seed %llu (replay with MOOR_SEED=%llu)\n", what, (unsigned long long)seed,
            (unsigned long long)seed);
    return seed;
}

/* xorshift64*: small, fast, deterministic from the seed. */
static inline uint64_t testutil_rand(uint64_t *state)
{
    uint64_t x = *state ? *state : 0x9e3779b97f4a7c15u;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545f4914f6cdd1du;
}

/* A full disk, for real: tmpfs filesystems of a few hundred KiB.
 *
 * testutil_tmpfs_init() moves the process into a mount namespace of its
 * own (root only; call it at the start of main, before any thread), so
 * every mount it makes vanishes when the process exits, however it exits.
 * testutil_tmpfs_mount() then mounts a tmpfs of `bytes` on a fresh
 * directory and returns its path (malloc'ed), or NULL when mounting is
 * impossible here (the test then skips); testutil_tmpfs_umount() unmounts
 * and removes it (teardowns call it, so a failed test unmounts too). */
static int testutil_tmpfs_ok = -1; /* -1 not tried, 0 impossible, 1 ready */

static inline void testutil_tmpfs_init(void)
{
    testutil_tmpfs_ok = geteuid() == 0 && unshare(CLONE_NEWNS) == 0 &&
                        mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0;
    if (!testutil_tmpfs_ok)
        fprintf(stderr, "tmpfs: no private mount namespace here (not root?): "
                        "full-disk tests will skip\n");
}

static inline char *testutil_tmpfs_mount(const char *tag, size_t bytes)
{
    char opts[64], *dir;

    if (testutil_tmpfs_ok != 1)
        return NULL;
    dir = testutil_tmpdir(tag);
    snprintf(opts, sizeof(opts), "size=%zu,mode=0755", bytes);
    if (mount("tmpfs", dir, "tmpfs", 0, opts) != 0) {
        perror("mount tmpfs");
        rmdir(dir);
        free(dir);
        return NULL;
    }
    return dir;
}

static inline void testutil_tmpfs_umount(char *dir)
{
    if (!dir)
        return;
    umount2(dir, MNT_DETACH);
    rmdir(dir);
    free(dir);
}

#endif
