/*
 * test_rss.c -- the engine's memory stays bounded by its own settings.
 *
 * An engine with a 4 MiB block cache, 2 MiB memtables and at most 2 frozen
 * ones takes ~48 MiB of user data (16-byte keys, 1000-byte values, each
 * value 600 random bytes then a repeated word, so zstd level 3 -- on --
 * has real work both ways), then serves random point reads over all of
 * it, each checked against the value it must have.  A sampler thread reads
 * the resident set size (/proc/self/statm) every 2 ms through both phases.
 * The peak growth over the RSS measured right after open must stay below
 *
 *     memtable_bytes * (1 + max_frozen) + cache_bytes
 *       + index_filter_bytes (the most moor_engine_stats reported) + slack
 *
 * where the 24 MiB slack covers allocator fragmentation and per-thread
 * malloc arenas, thread stacks, zstd contexts, the compaction builder's
 * buffers and the test's own few buffers.  The numbers are printed so the
 * README can quote them.  Nothing here is timed; the read phase also stops
 * early after READ_BUDGET_S seconds so a slow machine cannot run it long.
 *
 * Under ASan the RSS says nothing about the engine (shadow memory,
 * quarantine), so sanitizer builds run a quarter of the workload for its
 * correctness checks and skip the memory assertion.
 */
#include "testutil.h" /* first: it sets _GNU_SOURCE */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>

#include "engine/engine.h"
#include "util/buf.h"
#include "util/err.h"

#if defined(MOOR_SANITIZE) || defined(__SANITIZE_ADDRESS__)
#define UNDER_SANITIZER 1
#else
#define UNDER_SANITIZER 0
#endif

#define MiB (1024.0 * 1024.0)
#define KEY_LEN 16
#define VAL_LEN 1000
#define VAL_RANDOM 600 /* incompressible head of each value */
#define NKEYS 50000    /* 50000 * 1016 bytes = 48.4 MiB of user data */
#define BATCH 50
#define READS 200000
#define READ_BUDGET_S 15
#define SLACK (24u << 20)

/* ---- RSS sampling --------------------------------------------------- */

static size_t page_size;

static size_t rss_now(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size = 0, resident = 0;

    if (!f)
        return 0;
    if (fscanf(f, "%lu %lu", &size, &resident) != 2)
        resident = 0;
    fclose(f);
    return (size_t)resident * page_size;
}

typedef struct sampler {
    pthread_t th;
    atomic_int stop;
    atomic_size_t peak;
    atomic_long samples;
} sampler_t;

static void sampler_note(sampler_t *s, size_t rss)
{
    size_t cur = atomic_load(&s->peak);
    while (rss > cur && !atomic_compare_exchange_weak(&s->peak, &cur, rss))
        ;
}

static void *sampler_main(void *p)
{
    sampler_t *s = p;
    struct timespec ts = {0, 2 * 1000 * 1000};

    while (!atomic_load(&s->stop)) {
        sampler_note(s, rss_now());
        atomic_fetch_add(&s->samples, 1);
        nanosleep(&ts, NULL);
    }
    return NULL;
}

/* ---- the data set: key i and its value are functions of i alone ------ */

/* Keys are spread over the key space (a hash of i first) so flushes
 * overlap and compaction has work; i itself follows so keys are unique. */
static void make_key(uint64_t i, char *k)
{
    uint64_t h = i * 0x9e3779b97f4a7c15u;
    moor_enc_be64(k, h ^ (h >> 29));
    moor_enc_be64(k + 8, i);
}

static void make_value(uint64_t i, char *v)
{
    uint64_t st = i + 1, w;

    for (size_t off = 0; off < VAL_RANDOM; off += 8) {
        w = testutil_rand(&st);
        memcpy(v + off, &w, 8);
    }
    w = testutil_rand(&st);
    for (size_t off = VAL_RANDOM; off < VAL_LEN; off += 8)
        memcpy(v + off, &w, VAL_LEN - off < 8 ? VAL_LEN - off : 8);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- the test -------------------------------------------------------- */

typedef struct run {
    moor_engine_t *e;
    moor_engine_opts_t o;
    sampler_t smp;
    uint64_t max_index_filter; /* most index+filter memory stats reported */
    uint64_t max_memtables;    /* most memtable bytes stats reported */
    uint64_t max_cache;        /* most cache bytes stats reported */
} run_t;

static void note_stats(run_t *r, moor_engine_stats_t *st)
{
    moor_engine_stats(r->e, st);
    if (st->index_filter_bytes > r->max_index_filter)
        r->max_index_filter = st->index_filter_bytes;
    if (st->memtable_bytes > r->max_memtables)
        r->max_memtables = st->memtable_bytes;
    if (st->cache_bytes > r->max_cache)
        r->max_cache = st->cache_bytes;
    sampler_note(&r->smp, rss_now());
}

static void write_all(run_t *r, uint64_t nkeys)
{
    moor_batch_t *b = moor_batch_new();
    moor_engine_stats_t st;
    char k[KEY_LEN], v[VAL_LEN];

    assert_non_null(b);
    for (uint64_t i = 0; i < nkeys; i++) {
        make_key(i, k);
        make_value(i, v);
        assert_int_equal(moor_batch_put(b, k, KEY_LEN, v, VAL_LEN), 0);
        if (moor_batch_count(b) == BATCH || i + 1 == nkeys) {
            int rc = moor_engine_write(r->e, b);
            if (rc)
                print_error("write at key %llu: %s\n", (unsigned long long)i, moor_diag_msg(rc));
            assert_int_equal(rc, 0);
            moor_batch_clear(b);
        }
        if (i % 2000 == 0)
            note_stats(r, &st);
    }
    moor_batch_free(b);
    assert_int_equal(moor_engine_flush(r->e), 0);
    note_stats(r, &st);
}

/* Random gets over every key, each value checked.  Returns reads done. */
static long read_random(run_t *r, uint64_t nkeys, long nreads)
{
    uint64_t rng = testutil_seed("test_rss reads");
    moor_engine_stats_t st;
    char k[KEY_LEN], want[VAL_LEN];
    double deadline = now_s() + READ_BUDGET_S;
    long n;

    for (n = 0; n < nreads; n++) {
        uint64_t i = testutil_rand(&rng) % nkeys;
        void *val = NULL;
        size_t vlen = 0;
        int rc;

        make_key(i, k);
        make_value(i, want);
        rc = moor_engine_get(r->e, k, KEY_LEN, &val, &vlen);
        if (rc)
            print_error("get of key %llu: %s\n", (unsigned long long)i, moor_diag_msg(rc));
        assert_int_equal(rc, 0);
        assert_int_equal(vlen, VAL_LEN);
        assert_memory_equal(val, want, VAL_LEN);
        moor_engine_free(val);
        if (n % 5000 == 0) {
            note_stats(r, &st);
            if (now_s() > deadline)
                break;
        }
    }
    return n;
}

static void print_tables(const moor_engine_stats_t *st)
{
    print_message("rss: tables per level:");
    for (int l = 0; l < 7; l++)
        print_message(" L%d=%u", l, st->tables[l]);
    print_message("\n");
}

static void test_rss_bounded(void **state)
{
    char *dir = testutil_tmpdir("moor-test-rss");
    uint64_t nkeys = UNDER_SANITIZER ? NKEYS / 4 : NKEYS;
    long nreads = UNDER_SANITIZER ? READS / 4 : READS, done;
    moor_engine_stats_t st;
    size_t base, after_write, peak_write, peak, bound;
    double t0 = now_s(), t_write, t_read;
    run_t r;

    (void)state;
    memset(&r, 0, sizeof(r));
    page_size = (size_t)sysconf(_SC_PAGESIZE);
    moor_engine_opts_default(&r.o);
    r.o.cache_bytes = 4u << 20;
    r.o.memtable_bytes = 2u << 20;
    r.o.max_frozen = 2;
    r.o.compression_level = 3;
    r.o.sync_mode = MOOR_SYNC_NONE; /* memory is the subject, not durability */
    assert_int_equal(moor_engine_open(dir, &r.o, &r.e), 0);

    base = rss_now();
    assert_true(base > 0);
    atomic_store(&r.smp.peak, base);
    assert_int_equal(pthread_create(&r.smp.th, NULL, sampler_main, &r.smp), 0);

    write_all(&r, nkeys);
    t_write = now_s() - t0;
    after_write = rss_now();
    peak_write = atomic_load(&r.smp.peak);
    done = read_random(&r, nkeys, nreads);
    t_read = now_s() - t0 - t_write;

    atomic_store(&r.smp.stop, 1);
    assert_int_equal(pthread_join(r.smp.th, NULL), 0);
    note_stats(&r, &st);
    peak = atomic_load(&r.smp.peak);

    bound = r.o.memtable_bytes * (1 + r.o.max_frozen) + r.o.cache_bytes +
            (size_t)r.max_index_filter + SLACK;
    print_message("rss: data set %llu keys x (%d + %d) bytes = %.1f MiB user data, "
                  "%.1f MiB on disk (zstd level %d)\n",
                  (unsigned long long)nkeys, KEY_LEN, VAL_LEN, st.user_bytes_written / MiB,
                  st.disk_bytes / MiB, r.o.compression_level);
    print_message("rss: %.1f s writing, %ld random reads in %.1f s; %llu flushes, "
                  "%llu compactions, write amp %.2f\n",
                  t_write, done, t_read, (unsigned long long)st.flushes,
                  (unsigned long long)st.compactions, st.write_amp);
    print_tables(&st);
    print_message("rss: baseline after open %.1f MiB; peak while writing +%.1f MiB, "
                  "after writing +%.1f MiB; peak overall +%.1f MiB (%ld samples)\n",
                  base / MiB, (peak_write - base) / MiB, ((double)after_write - base) / MiB,
                  (peak - base) / MiB, atomic_load(&r.smp.samples));
    print_message("rss: engine figures: memtables %.1f MiB x (1 + %u frozen) (%.2f MiB at most "
                  "seen), cache %.1f MiB "
                  "(used %.2f MiB now, %.2f MiB at most seen; hits %llu misses %llu), "
                  "index+filter %.2f MiB at most, slack %.1f MiB\n",
                  r.o.memtable_bytes / MiB, r.o.max_frozen, r.max_memtables / MiB,
                  r.o.cache_bytes / MiB, st.cache_bytes / MiB, r.max_cache / MiB,
                  (unsigned long long)st.cache_hits, (unsigned long long)st.cache_misses,
                  r.max_index_filter / MiB, SLACK / MiB);
    print_message("rss: bound %.1f MiB, peak growth %.1f MiB\n", bound / MiB, (peak - base) / MiB);

    /* The engine's own accounting must hold whatever the allocator does. */
    assert_true(r.max_cache <= r.o.cache_bytes);
    /* At most 1 + max_frozen memtables, each past its limit by no more
     * than the batch that crossed it and an arena block. */
    assert_true(r.max_memtables <= (1 + r.o.max_frozen) * (r.o.memtable_bytes + (256u << 10)));
    assert_true(done > 0);

    if (UNDER_SANITIZER) {
        print_message("rss: memory bound skipped under sanitizer\n");
    } else {
        if (peak - base >= bound)
            print_error("peak RSS growth %zu bytes >= bound %zu bytes\n", peak - base, bound);
        assert_in_range(peak - base, 0, bound - 1);
    }

    assert_int_equal(moor_engine_close(r.e), 0);
    testutil_rmrf(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rss_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
