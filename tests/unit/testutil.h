/*
 * testutil.h -- shared helpers of the C unit tests (header-only).
 * TEST: temporary directories under $MOOR_TEST_TMP (or /tmp), removed on
 * success; a seed from $MOOR_SEED or the clock, always printed.
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
    fprintf(stderr, "%s: seed %llu (replay with MOOR_SEED=%llu)\n", what,
            (unsigned long long)seed, (unsigned long long)seed);
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

#endif
