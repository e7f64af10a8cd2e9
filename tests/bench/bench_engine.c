/*
 * bench_engine.c -- Moor's storage engine against RocksDB and LevelDB: the
 * same workloads, the same keys and values, comparable options, one run.
 *
 * Design: the parent forks one child per engine; the child runs every
 * workload against that engine and sends each result up a pipe as a
 * fixed-size record; the parent reaps it with wait4() and takes its peak RSS
 * from the rusage, so no engine's memory is charged to another.  A first
 * child that only builds the shared inputs (key order, value pool) gives the
 * harness's own RSS as a baseline.  Once every child is done the parent
 * prints a human table with Moor/peer ratios, then one JSON object per line.
 *
 * Data: 16-byte keys, the zero-padded decimal of 2*i (so 2*i+1 are misses
 * that fall between stored keys and must be rejected by Bloom filters or a
 * block search, not by a table's key range); 100-byte values, 50 random
 * printable bytes followed by the same 50 again, so they compress to about
 * half (as db_bench does).  Random orders come from splitmix64 with a fixed
 * seed (--seed), identical for every engine.
 *
 * Workloads, in this order, each engine in fresh directories under --dir:
 *   fillseq       num puts, ascending keys, into an empty database
 *   fillrandom    num puts, a random permutation, into another empty one;
 *                 the next six run on that database
 *   overwrite     num puts of random existing keys
 *   readrandom    --reads gets of random existing keys (all hit)
 *   readmissing   --reads gets of absent keys between existing ones
 *   readseq       one iterator over the whole database
 *   seekrandom    --seeks times: new iterator, seek, read --scan entries
 *   deleterandom  num deletes, each stored key once, random order
 *   fillsync      --sync-ops puts, each durable (fsync) before the next
 *   fillsync_8t   --conc-ops puts from --threads threads, each durable
 *                 before that thread's next (group commit batches them)
 * Every workload stops at --max-secs and is then marked truncated, so a slow
 * engine cannot make the run unbounded.  Sync workloads and seekrandom have
 * fixed or num/20 op counts so the default run (--num 1000000, three
 * engines) takes about 5 minutes on 2 busy cores.  Engines run one after
 * another, so on a shared machine compare ratios, not absolute figures,
 * and repeat a run before trusting a small difference.
 *
 * Options made comparable: commit log on, no sync per write (Moor
 * MOOR_SYNC_NONE, peers' default sync=false) except the fillsync ones (Moor
 * MOOR_SYNC_ALWAYS, peers sync=true); Bloom 10 bits/key; 64 MiB block cache;
 * 64 MiB write buffer; 4 KiB blocks; zstd at its default level 3 for Moor
 * and RocksDB, snappy for LevelDB (it has nothing else).  Everything else is
 * each engine's default (file sizes, level sizes, background threads).
 *
 * The engines sit behind one table of functions, in bench_adapters.h.
 *
 * Threads: the parent is single-threaded and forks before any engine runs;
 * a child is single-threaded except inside fillsync_8t.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench_adapters.h"

#define KEY_LEN 16
#define VAL_LEN 100
#define POOL_BYTES (1u << 20)
#define MAX_ENGINES BENCH_NENGINES
#define MAX_METRICS 40
#define PROGRESS_SECS 10.0

/* ---- configuration ------------------------------------------------------ */

typedef struct bench_cfg {
    uint64_t num;      /* keys in the data set; main workloads do num ops */
    uint64_t reads;    /* ops of readrandom and readmissing */
    uint64_t seeks;    /* ops of seekrandom */
    uint64_t sync_ops; /* ops of fillsync */
    uint64_t conc_ops; /* ops of fillsync_8t, all threads together */
    unsigned scan_len; /* entries read after each seek */
    unsigned threads;  /* writers of fillsync_8t */
    double max_secs;   /* cap per workload */
    uint64_t seed;
    const char *dir; /* parent of the per-engine directories */
    int nengines;
    int engines[MAX_ENGINES]; /* indexes into BENCH_ADAPTERS, in run order */
    unsigned want;            /* bit w set: run WORKLOADS[w] (--workloads) */
} bench_cfg_t;

/* Workloads in run order; results and ratios are printed in this order. */
static const char *const WORKLOADS[] = {"fillseq",     "fillrandom", "overwrite",  "readrandom",
                                        "readmissing", "readseq",    "seekrandom", "deleterandom",
                                        "fillsync",    "fillsync_8t"};
#define NWORKLOADS (sizeof WORKLOADS / sizeof WORKLOADS[0])
#define WANT_ALL ((1u << NWORKLOADS) - 1)

static int workload_index(const char *name);

/* 1 if --workloads asked for name. */
static int wanted(const bench_cfg_t *cfg, const char *name)
{
    int w = workload_index(name);

    return w >= 0 && (cfg->want >> w & 1);
}

/* ---- results and the child -> parent pipe ------------------------------- */

typedef struct result {
    char workload[24];
    uint64_t ops;   /* operations completed */
    uint64_t bytes; /* key + value bytes moved (keys only for deletes, misses) */
    uint64_t found; /* gets that found their key / entries scanned */
    double secs;
    double p50_us, p99_us; /* per-op latency, sync workloads only; else < 0 */
    int truncated;         /* stopped by --max-secs */
} result_t;

enum { MSG_RESULT = 1, MSG_METRIC = 2, MSG_ERROR = 3 };

/* One record per write(2); smaller than PIPE_BUF, so never split. */
typedef struct msg {
    int kind;
    char name[48];            /* MSG_METRIC: metric name */
    char text[BENCH_ERR_LEN]; /* MSG_ERROR: what failed (bench_err) */
    double value;             /* MSG_METRIC */
    result_t r;               /* MSG_RESULT */
} msg_t;

static void send_msg(int fd, const msg_t *m)
{
    const char *p = (const char *)m;
    size_t left = sizeof *m;

    while (left) {
        ssize_t n = write(fd, p, left);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return; /* parent gone: nothing left to report to */
        p += n;
        left -= (size_t)n;
    }
}

static void send_metric(int fd, const char *name, double value)
{
    msg_t m = {.kind = MSG_METRIC, .value = value};

    snprintf(m.name, sizeof m.name, "%s", name);
    send_msg(fd, &m);
}

static double now_secs(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- inputs: keys, values, random order --------------------------------- */

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Uniform enough below n: the modulo bias is < n / 2^64. */
static uint64_t rng_below(uint64_t *s, uint64_t n)
{
    return n ? rng_next(s) % n : 0;
}

/* Stored key number i is the decimal of 2*i; absent ones are odd. */
static void key_fmt(char *out, uint64_t n)
{
    for (int i = KEY_LEN - 1; i >= 0; i--) {
        out[i] = (char)('0' + n % 10);
        n /= 10;
    }
}

static void key_stored(char *out, uint64_t i)
{
    key_fmt(out, 2 * i);
}

static void key_absent(char *out, uint64_t i)
{
    key_fmt(out, 2 * i + 1);
}

/* POOL_BYTES of values back to back, each half random, half its repeat. */
static char *pool_new(uint64_t seed)
{
    char *p = malloc(POOL_BYTES);
    uint64_t s = seed ^ 0x5eed;

    if (!p)
        return NULL;
    for (size_t off = 0; off + VAL_LEN <= POOL_BYTES; off += VAL_LEN) {
        for (size_t j = 0; j < VAL_LEN / 2; j++)
            p[off + j] = (char)(' ' + rng_below(&s, 95));
        memcpy(p + off + VAL_LEN / 2, p + off, VAL_LEN - VAL_LEN / 2);
    }
    return p;
}

static const char *pool_value(const char *pool, uint64_t n)
{
    return pool + (n % (POOL_BYTES / VAL_LEN)) * VAL_LEN;
}

/* A random permutation of [0, n) (Fisher-Yates). */
static uint32_t *perm_new(uint64_t n, uint64_t seed)
{
    uint32_t *p = malloc((n ? n : 1) * sizeof *p);
    uint64_t s = seed;

    if (!p)
        return NULL;
    for (uint64_t i = 0; i < n; i++)
        p[i] = (uint32_t)i;
    for (uint64_t i = n; i > 1; i--) {
        uint64_t j = rng_below(&s, i);
        uint32_t t = p[i - 1];

        p[i - 1] = p[j];
        p[j] = t;
    }
    return p;
}

/* ---- directories --------------------------------------------------------- */

static uint64_t du_alloc, du_size;

static int du_cb(const char *path, const struct stat *sb, int flag, struct FTW *f)
{
    (void)path, (void)f;
    if (flag == FTW_F) {
        du_alloc += (uint64_t)sb->st_blocks * 512;
        du_size += (uint64_t)sb->st_size;
    }
    return 0;
}

/* Sends <when>'s footprint of dir: "size_<when>", the bytes in its files,
 * and "du_<when>", the bytes allocated as du(1) counts them (which also
 * counts space preallocated for logs, as RocksDB does).  Files that vanish
 * under a running compaction are skipped. */
static void send_disk_usage(int fd, const char *dir, const char *when)
{
    char name[48];

    du_alloc = du_size = 0;
    nftw(dir, du_cb, 32, FTW_PHYS);
    snprintf(name, sizeof name, "size_%s", when);
    send_metric(fd, name, (double)du_size);
    snprintf(name, sizeof name, "du_%s", when);
    send_metric(fd, name, (double)du_alloc);
}

static int rm_cb(const char *path, const struct stat *sb, int flag, struct FTW *f)
{
    (void)sb, (void)flag, (void)f;
    remove(path);
    return 0;
}

static void rm_rf(const char *path)
{
    nftw(path, rm_cb, 32, FTW_DEPTH | FTW_PHYS);
}

static int mkdir_p(const char *path)
{
    char tmp[4096];

    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return mkdir(tmp, 0755) < 0 && errno != EEXIST ? -1 : 0;
}

/* ---- running a workload in the child ------------------------------------ */

typedef struct bench_ctx {
    const bench_cfg_t *cfg;
    const adapter_t *a;
    void *h;          /* open database, or NULL */
    int fd;           /* pipe to the parent */
    uint32_t *perm;   /* fillrandom's order: perm[i] is the i-th key written */
    uint64_t filled;  /* keys of perm that fillrandom wrote */
    const char *pool; /* values */
    uint64_t rng;     /* the child's random stream, same for every engine */
} bench_ctx_t;

typedef struct run {
    bench_ctx_t *c;
    result_t r;
    uint64_t planned;
    double t0, deadline, next_progress;
} run_t;

/* Sends the engine's own figures as metrics named <stat>_<when>. */
static void send_engine_stats(bench_ctx_t *c, const char *when)
{
    bench_stat_t st[16];
    char name[48];
    int n;

    if (!c->a->stats)
        return;
    n = c->a->stats(c->h, st, 16);
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof name, "%s_%s", st[i].name, when);
        send_metric(c->fd, name, st[i].value);
    }
}

static void run_begin(run_t *run, bench_ctx_t *c, const char *name, uint64_t planned)
{
    memset(run, 0, sizeof *run);
    run->c = c;
    run->planned = planned;
    snprintf(run->r.workload, sizeof run->r.workload, "%s", name);
    run->r.p50_us = run->r.p99_us = -1;
    fprintf(stderr, "[%s] %s: %" PRIu64 " ops...\n", c->a->name, name, planned);
    run->t0 = now_secs();
    run->deadline = run->t0 + c->cfg->max_secs;
    run->next_progress = run->t0 + PROGRESS_SECS;
}

/* Called each op with the count done so far; returns 1 when the time cap
 * is reached.  Reads the clock every 256 ops only. */
static int run_tick(run_t *run, uint64_t done)
{
    double t;

    if (done & 255)
        return 0;
    t = now_secs();
    if (t >= run->deadline) {
        run->r.truncated = 1;
        return 1;
    }
    if (t >= run->next_progress) {
        fprintf(stderr, "[%s] %s: %" PRIu64 "/%" PRIu64 " after %.0f s\n", run->c->a->name,
                run->r.workload, done, run->planned, t - run->t0);
        run->next_progress = t + PROGRESS_SECS;
    }
    return 0;
}

static void run_end(run_t *run, uint64_t ops)
{
    msg_t m = {.kind = MSG_RESULT};

    run->r.secs = now_secs() - run->t0;
    run->r.ops = ops;
    fprintf(stderr, "[%s] %s: %" PRIu64 " ops in %.2f s, %.0f ops/s%s\n", run->c->a->name,
            run->r.workload, ops, run->r.secs, run->r.secs > 0 ? ops / run->r.secs : 0.0,
            run->r.truncated ? " (truncated by --max-secs)" : "");
    m.r = run->r;
    send_msg(run->c->fd, &m);
}

/* Reports bench_err as the failure of what; returns -1. */
static int fail_msg(bench_ctx_t *c, const char *what)
{
    msg_t m = {.kind = MSG_ERROR};

    snprintf(m.name, sizeof m.name, "%s", what);
    snprintf(m.text, sizeof m.text, "%s", bench_err);
    fprintf(stderr, "[%s] %s failed: %s\n", c->a ? c->a->name : "harness", what, bench_err);
    send_msg(c->fd, &m);
    return -1;
}

static int run_fail(run_t *run)
{
    return fail_msg(run->c, run->r.workload);
}

/* fillseq / fillrandom: num puts; order NULL means ascending keys. */
static int wl_fill(bench_ctx_t *c, const char *name, const uint32_t *order)
{
    run_t run;
    char key[KEY_LEN];
    uint64_t i;

    run_begin(&run, c, name, c->cfg->num);
    for (i = 0; i < c->cfg->num && !run_tick(&run, i); i++) {
        uint64_t n = order ? order[i] : i;

        key_stored(key, n);
        if (c->a->put(c->h, key, KEY_LEN, pool_value(c->pool, i), VAL_LEN) < 0)
            return run_fail(&run);
    }
    run.r.bytes = i * (KEY_LEN + VAL_LEN);
    if (order)
        c->filled = i;
    run_end(&run, i);
    return 0;
}

static int wl_overwrite(bench_ctx_t *c)
{
    run_t run;
    char key[KEY_LEN];
    uint64_t i;

    run_begin(&run, c, "overwrite", c->cfg->num);
    for (i = 0; i < c->cfg->num && !run_tick(&run, i); i++) {
        key_stored(key, c->perm[rng_below(&c->rng, c->filled)]);
        if (c->a->put(c->h, key, KEY_LEN, pool_value(c->pool, i + 7), VAL_LEN) < 0)
            return run_fail(&run);
    }
    run.r.bytes = i * (KEY_LEN + VAL_LEN);
    run_end(&run, i);
    return 0;
}

/* readrandom (hits, keys from the filled set) or readmissing. */
static int wl_read(bench_ctx_t *c, int hits)
{
    run_t run;
    char key[KEY_LEN];
    uint64_t i;

    run_begin(&run, c, hits ? "readrandom" : "readmissing", c->cfg->reads);
    for (i = 0; i < c->cfg->reads && !run_tick(&run, i); i++) {
        size_t vlen = 0;
        int rc;

        if (hits)
            key_stored(key, c->perm[rng_below(&c->rng, c->filled)]);
        else
            key_absent(key, rng_below(&c->rng, c->cfg->num));
        rc = c->a->get(c->h, key, KEY_LEN, &vlen);
        if (rc < 0)
            return run_fail(&run);
        run.r.found += (uint64_t)rc;
        run.r.bytes += KEY_LEN + (rc ? vlen : 0);
    }
    run_end(&run, i);
    if (hits && run.r.found != i)
        fprintf(stderr, "[%s] readrandom: only %" PRIu64 " of %" PRIu64 " keys found\n", c->a->name,
                run.r.found, i);
    if (!hits && run.r.found)
        fprintf(stderr, "[%s] readmissing: %" PRIu64 " absent keys found\n", c->a->name,
                run.r.found);
    return 0;
}

/* Reads up to max entries from its position; returns entries read. */
static uint64_t scan(bench_ctx_t *c, run_t *run, void *it, uint64_t max)
{
    uint64_t n = 0;

    while (n < max && c->a->iter_valid(it)) {
        size_t kl = 0, vl = 0;

        c->a->iter_key(it, &kl);
        c->a->iter_value(it, &vl);
        run->r.bytes += kl + vl;
        n++;
        c->a->iter_next(it);
        if (max > c->cfg->scan_len && run_tick(run, n))
            break;
    }
    return n;
}

static int wl_readseq(bench_ctx_t *c)
{
    run_t run;
    void *it;
    uint64_t n;

    run_begin(&run, c, "readseq", c->filled);
    it = c->a->iter_new(c->h);
    if (!it)
        return run_fail(&run);
    c->a->iter_first(it);
    n = scan(c, &run, it, UINT64_MAX);
    if (c->a->iter_status(it) < 0) {
        c->a->iter_free(it);
        return run_fail(&run);
    }
    c->a->iter_free(it);
    run.r.found = n;
    run_end(&run, n);
    return 0;
}

/* A fresh iterator (a fresh snapshot) per seek, as a range request would. */
static int wl_seekrandom(bench_ctx_t *c)
{
    run_t run;
    char key[KEY_LEN];
    uint64_t i;

    run_begin(&run, c, "seekrandom", c->cfg->seeks);
    for (i = 0; i < c->cfg->seeks && !run_tick(&run, i); i++) {
        void *it = c->a->iter_new(c->h);

        if (!it)
            return run_fail(&run);
        key_stored(key, c->perm[rng_below(&c->rng, c->filled)]);
        c->a->iter_seek(it, key, KEY_LEN);
        run.r.found += scan(c, &run, it, c->cfg->scan_len);
        if (c->a->iter_status(it) < 0) {
            c->a->iter_free(it);
            return run_fail(&run);
        }
        c->a->iter_free(it);
    }
    run_end(&run, i);
    return 0;
}

/* Deletes every stored key once, in an order unrelated to the fill. */
static int wl_deleterandom(bench_ctx_t *c)
{
    run_t run;
    char key[KEY_LEN];
    uint64_t i, stride, start;

    /* An odd stride coprime with filled walks perm in a different order. */
    stride = c->filled > 1 ? (c->filled / 2) | 1 : 1;
    while (c->filled > 1) {
        uint64_t a = stride, b = c->filled;

        while (b) {
            uint64_t t = a % b;
            a = b;
            b = t;
        }
        if (a == 1)
            break;
        stride += 2;
    }
    start = rng_below(&c->rng, c->filled);
    run_begin(&run, c, "deleterandom", c->filled);
    for (i = 0; i < c->filled && !run_tick(&run, i); i++) {
        key_stored(key, c->perm[(start + i * stride) % c->filled]);
        if (c->a->del(c->h, key, KEY_LEN) < 0)
            return run_fail(&run);
    }
    run.r.bytes = i * KEY_LEN;
    run_end(&run, i);
    return 0;
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;

    return (x > y) - (x < y);
}

static void latency_percentiles(result_t *r, float *lat, uint64_t n)
{
    if (!n)
        return;
    qsort(lat, n, sizeof *lat, cmp_float);
    r->p50_us = lat[(n - 1) / 2];
    r->p99_us = lat[(n - 1) * 99 / 100];
}

/* Holds the writers of fillsync_8t until all exist, so they start together. */
typedef struct gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int open;
} gate_t;

static void gate_wait(gate_t *g)
{
    pthread_mutex_lock(&g->mu);
    while (!g->open)
        pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

static void gate_open(gate_t *g)
{
    pthread_mutex_lock(&g->mu);
    g->open = 1;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

/* One writer of fillsync / fillsync_8t: ops puts of random keys, each timed.
 * The writers of one run share only stop, truncated and the database. */
typedef struct writer {
    bench_ctx_t *c;
    gate_t *gate; /* NULL when single-threaded */
    double deadline;
    atomic_int *stop;      /* set by the first writer to fail or time out */
    atomic_int *truncated; /* set when the time cap stopped a writer */
    uint64_t seed;
    uint64_t ops, done;
    float *lat; /* ops entries, microseconds */
    int failed;
    char err[sizeof bench_err];
} writer_t;

static void *writer_main(void *arg)
{
    writer_t *w = arg;
    char key[KEY_LEN];
    uint64_t s = w->seed;

    if (w->gate)
        gate_wait(w->gate);
    for (w->done = 0; w->done < w->ops && !atomic_load(w->stop); w->done++) {
        double t = now_secs();

        if (t >= w->deadline) {
            atomic_store(w->truncated, 1);
            atomic_store(w->stop, 1);
            break;
        }
        key_stored(key, rng_below(&s, w->c->cfg->num));
        if (w->c->a->put(w->c->h, key, KEY_LEN, pool_value(w->c->pool, w->done), VAL_LEN) < 0) {
            w->failed = 1;
            snprintf(w->err, sizeof w->err, "%s", bench_err);
            atomic_store(w->stop, 1);
            break;
        }
        w->lat[w->done] = (float)((now_secs() - t) * 1e6);
    }
    return NULL;
}

/* Starts threads writers (threads > 1) and waits for them; 0 or -1. */
static int writers_run(writer_t *w, unsigned threads, run_t *run)
{
    gate_t gate = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0};
    pthread_t tid[64];
    unsigned started;
    int rc = 0;

    for (started = 0; started < threads; started++) {
        w[started].gate = &gate;
        if (pthread_create(&tid[started], NULL, writer_main, &w[started]) != 0)
            break;
    }
    if (started < threads) {
        set_err("pthread_create failed after %u threads", started);
        atomic_store(w[0].stop, 1);
        rc = -1;
    }
    run->t0 = now_secs();
    gate_open(&gate);
    for (unsigned t = 0; t < started; t++)
        pthread_join(tid[t], NULL);
    return rc;
}

/* fillsync (threads == 1) or fillsync_8t: total durable puts in all. */
static int wl_sync(bench_ctx_t *c, const char *name, unsigned threads, uint64_t total)
{
    run_t run;
    writer_t w[64];
    atomic_int stop = 0, truncated = 0;
    uint64_t done = 0, off = 0;
    float *lat = malloc((total ? total : 1) * sizeof *lat);
    int rc = 0;

    if (!lat) {
        set_err("%s: out of memory", name);
        return fail_msg(c, name);
    }
    threads = threads > 64 ? 64 : threads ? threads : 1;
    run_begin(&run, c, name, total);
    for (unsigned t = 0; t < threads; t++) {
        w[t] = (writer_t){.c = c,
                          .deadline = run.deadline,
                          .stop = &stop,
                          .truncated = &truncated,
                          .seed = c->cfg->seed * 31 + t + 1};
        w[t].ops = total / threads + (t < total % threads);
        w[t].lat = lat + off;
        off += w[t].ops;
    }
    if (threads == 1)
        writer_main(&w[0]);
    else
        rc = writers_run(w, threads, &run);
    for (unsigned t = 0; t < threads; t++) {
        if (w[t].failed && rc == 0) {
            snprintf(bench_err, sizeof bench_err, "%s", w[t].err);
            rc = -1;
        }
        /* Pack the latencies of completed ops together. */
        memmove(lat + done, w[t].lat, w[t].done * sizeof *lat);
        done += w[t].done;
    }
    if (rc == 0) {
        run.r.truncated = atomic_load(&truncated);
        latency_percentiles(&run.r, lat, done);
        run.r.bytes = done * (KEY_LEN + VAL_LEN);
        run_end(&run, done);
    } else {
        run_fail(&run);
    }
    free(lat);
    return rc;
}

/* ---- one engine, start to end (the child) -------------------------------- */

/* Tags of the databases a child makes, <dir>/<engine>-<tag>. */
static const char *const DB_TAGS[] = {"seq", "main", "fillsync", "fillsync_8t"};

/* Opens a fresh database in <dir>/<engine>-<tag>, removing leftovers. */
static int db_fresh(bench_ctx_t *c, char *path, size_t size, const char *tag, int sync)
{
    snprintf(path, size, "%s/%s-%s", c->cfg->dir, c->a->name, tag);
    rm_rf(path);
    c->h = c->a->open(path, sync);
    if (!c->h) {
        char what[64];

        snprintf(what, sizeof what, "open %s", tag);
        return fail_msg(c, what);
    }
    return 0;
}

static void db_drop(bench_ctx_t *c, const char *path)
{
    if (c->h)
        c->a->close(c->h);
    c->h = NULL;
    rm_rf(path);
}

/* The bits of the main phase's workloads from WORKLOADS[first] on. */
static unsigned main_bits(int first)
{
    return ~((1u << first) - 1) & ((1u << workload_index("fillsync")) - 1);
}

static int main_wanted(const bench_cfg_t *cfg)
{
    return (cfg->want & main_bits(workload_index("fillrandom"))) != 0;
}

/* Runs the workloads that share the fillrandom database. */
static int phase_main(bench_ctx_t *c)
{
    char path[4096];
    const bench_cfg_t *cfg = c->cfg;
    /* fillrandom and overwrite build the database the later workloads read,
     * so with --workloads they run (and report) whenever a later one does. */
    unsigned later = cfg->want & main_bits(workload_index("overwrite"));

    if (db_fresh(c, path, sizeof path, DB_TAGS[1], 0) < 0)
        return -1;
    if (wl_fill(c, "fillrandom", c->perm) < 0)
        goto fail;
    /* Still open, so a snapshot taken while background work may run. */
    send_disk_usage(c->fd, path, "after_fillrandom");
    send_engine_stats(c, "after_fillrandom");
    if ((later && wl_overwrite(c) < 0) || (wanted(cfg, "readrandom") && wl_read(c, 1) < 0) ||
        (wanted(cfg, "readmissing") && wl_read(c, 0) < 0) ||
        (wanted(cfg, "readseq") && wl_readseq(c) < 0) ||
        (wanted(cfg, "seekrandom") && wl_seekrandom(c) < 0) ||
        (wanted(cfg, "deleterandom") && wl_deleterandom(c) < 0))
        goto fail;
    send_engine_stats(c, "at_end");
    c->a->close(c->h);
    c->h = NULL;
    send_disk_usage(c->fd, path, "at_end");
    rm_rf(path);
    return 0;
fail:
    db_drop(c, path);
    return -1;
}

static int phase_sync(bench_ctx_t *c, const char *name, unsigned threads, uint64_t ops)
{
    char path[4096];
    int rc;

    if (db_fresh(c, path, sizeof path, name, 1) < 0)
        return -1;
    rc = wl_sync(c, name, threads, ops);
    db_drop(c, path);
    return rc;
}

static int child_run(const bench_cfg_t *cfg, const adapter_t *a, int fd)
{
    bench_ctx_t c = {.cfg = cfg, .a = a, .fd = fd, .rng = cfg->seed};
    char path[4096];
    int rc = -1;

    c.perm = perm_new(cfg->num, cfg->seed);
    c.pool = pool_new(cfg->seed);
    if (!c.perm || !c.pool) {
        set_err("out of memory for %" PRIu64 " keys", cfg->num);
        fail_msg(&c, "setup");
        goto out;
    }
    if (!a) { /* the baseline child: inputs only */
        rc = 0;
        goto out;
    }
    if (wanted(cfg, "fillseq")) {
        if (db_fresh(&c, path, sizeof path, DB_TAGS[0], 0) < 0)
            goto out;
        if (wl_fill(&c, "fillseq", NULL) < 0) {
            db_drop(&c, path);
            goto out;
        }
        /* Measured after close, which waits for the flush or compaction in
         * progress (no engine flushes its memtable on close: the log has it). */
        c.a->close(c.h);
        c.h = NULL;
        send_disk_usage(fd, path, "after_fillseq");
        db_drop(&c, path);
    }
    if ((main_wanted(cfg) && phase_main(&c) < 0) ||
        (wanted(cfg, "fillsync") && phase_sync(&c, "fillsync", 1, cfg->sync_ops) < 0) ||
        (wanted(cfg, "fillsync_8t") &&
         phase_sync(&c, "fillsync_8t", cfg->threads, cfg->conc_ops) < 0))
        goto out;
    rc = 0;
out:
    free(c.perm);
    free((char *)c.pool);
    return rc;
}

/* ---- the parent: fork, collect, report ----------------------------------- */

typedef struct engine_run {
    const adapter_t *a;
    result_t res[NWORKLOADS];
    int has[NWORKLOADS];
    struct {
        char name[48];
        double value;
    } metric[MAX_METRICS];
    int nmetric;
    char error[320]; /* empty unless the child reported or died */
    long maxrss_kb;
} engine_run_t;

static int workload_index(const char *name)
{
    for (size_t i = 0; i < NWORKLOADS; i++)
        if (strcmp(WORKLOADS[i], name) == 0)
            return (int)i;
    return -1;
}

static void collect(engine_run_t *er, int fd)
{
    msg_t m;

    for (;;) {
        size_t got = 0;

        while (got < sizeof m) {
            ssize_t n = read(fd, (char *)&m + got, sizeof m - got);

            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                return;
            got += (size_t)n;
        }
        if (m.kind == MSG_RESULT) {
            int w;

            m.r.workload[sizeof m.r.workload - 1] = 0;
            w = workload_index(m.r.workload);
            if (w >= 0) {
                er->res[w] = m.r;
                er->has[w] = 1;
            }
        } else if (m.kind == MSG_METRIC && er->nmetric < MAX_METRICS) {
            snprintf(er->metric[er->nmetric].name, sizeof er->metric[0].name, "%.47s", m.name);
            er->metric[er->nmetric++].value = m.value;
        } else if (m.kind == MSG_ERROR && !er->error[0]) {
            snprintf(er->error, sizeof er->error, "%.47s: %.255s", m.name, m.text);
        }
    }
}

/* Runs child_run(a) in a child; a NULL a measures the harness alone. */
static void run_child(const bench_cfg_t *cfg, const adapter_t *a, engine_run_t *er)
{
    int p[2], status = 0;
    struct rusage ru = {0};
    pid_t pid;

    memset(er, 0, sizeof *er);
    er->a = a;
    if (pipe(p) < 0) {
        snprintf(er->error, sizeof er->error, "pipe: %s", strerror(errno));
        return;
    }
    fflush(NULL);
    pid = fork();
    if (pid < 0) {
        snprintf(er->error, sizeof er->error, "fork: %s", strerror(errno));
        close(p[0]);
        close(p[1]);
        return;
    }
    if (pid == 0) {
        close(p[0]);
        _exit(child_run(cfg, a, p[1]) < 0 ? 1 : 0);
    }
    close(p[1]);
    collect(er, p[0]);
    close(p[0]);
    while (wait4(pid, &status, 0, &ru) < 0 && errno == EINTR)
        ;
    er->maxrss_kb = ru.ru_maxrss;
    /* A child that died mid-workload leaves its database behind. */
    for (size_t i = 0; a && i < sizeof DB_TAGS / sizeof DB_TAGS[0]; i++) {
        char path[4096];

        snprintf(path, sizeof path, "%s/%s-%s", cfg->dir, a->name, DB_TAGS[i]);
        rm_rf(path);
    }
    if (!er->error[0] && WIFSIGNALED(status))
        snprintf(er->error, sizeof er->error, "killed by signal %d", WTERMSIG(status));
    else if (!er->error[0] && WEXITSTATUS(status) != 0)
        snprintf(er->error, sizeof er->error, "exited with status %d", WEXITSTATUS(status));
}

static double ops_per_sec(const result_t *r)
{
    return r->secs > 0 ? r->ops / r->secs : 0;
}

static double mib_per_sec(const result_t *r)
{
    return r->secs > 0 ? r->bytes / 1048576.0 / r->secs : 0;
}

static double micros_per_op(const result_t *r)
{
    return r->ops ? r->secs * 1e6 / r->ops : 0;
}

static const engine_run_t *find_engine(const engine_run_t *runs, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (strcmp(runs[i].a->name, name) == 0)
            return &runs[i];
    return NULL;
}

static int get_metric(const engine_run_t *er, const char *name, double *v)
{
    for (int i = 0; i < er->nmetric; i++)
        if (strcmp(er->metric[i].name, name) == 0) {
            *v = er->metric[i].value;
            return 1;
        }
    return 0;
}

static void print_ratio_line(const char *what, double moor, double rocks, int has_rocks,
                             double level, int has_level, const char *unit)
{
    printf("  %-22s moor/rocksdb ", what);
    if (has_rocks && rocks > 0)
        printf("%6.2fx", moor / rocks);
    else
        printf("%7s", "n/a");
    printf("   moor/leveldb ");
    if (has_level && level > 0)
        printf("%6.2fx", moor / level);
    else
        printf("%7s", "n/a");
    printf("%s\n", unit);
}

/* Reads and scans count what they found (entries, for scans). */
static int reports_found(const char *workload)
{
    return strncmp(workload, "read", 4) == 0 || strcmp(workload, "seekrandom") == 0;
}

static void print_workload_table(const engine_run_t *runs, int n)
{
    const engine_run_t *moor = find_engine(runs, n, "moor");
    const engine_run_t *rocks = find_engine(runs, n, "rocksdb");
    const engine_run_t *level = find_engine(runs, n, "leveldb");

    printf("%-13s %-8s %10s %12s %9s %10s  %s\n", "workload", "engine", "ops", "ops/s", "MB/s",
           "us/op", "notes");
    for (size_t w = 0; w < NWORKLOADS; w++) {
        for (int e = 0; e < n; e++) {
            const result_t *r = &runs[e].res[w];

            if (!runs[e].has[w]) {
                printf("%-13s %-8s %10s\n", WORKLOADS[w], runs[e].a->name, "-");
                continue;
            }
            printf("%-13s %-8s %10" PRIu64 " %12.0f %9.2f %10.2f ", WORKLOADS[w], runs[e].a->name,
                   r->ops, ops_per_sec(r), mib_per_sec(r), micros_per_op(r));
            if (r->p50_us >= 0)
                printf(" p50 %.0f us, p99 %.0f us", r->p50_us, r->p99_us);
            if (strcmp(WORKLOADS[w], "seekrandom") == 0 || strcmp(WORKLOADS[w], "readseq") == 0)
                printf(" %" PRIu64 " entries", r->found);
            else if (strncmp(WORKLOADS[w], "read", 4) == 0)
                printf(" %" PRIu64 " found", r->found);
            if (r->truncated)
                printf(" TRUNCATED");
            printf("\n");
        }
        if (moor && moor->has[w])
            print_ratio_line(WORKLOADS[w], ops_per_sec(&moor->res[w]),
                             rocks ? ops_per_sec(&rocks->res[w]) : 0, rocks && rocks->has[w],
                             level ? ops_per_sec(&level->res[w]) : 0, level && level->has[w],
                             "  (ops/s; >1 = moor faster)");
    }
}

/* Footprint moments, and the two ways of counting each (send_disk_usage). */
static const char *const SUMMARY_WHEN[] = {"after_fillseq", "after_fillrandom", "at_end"};
#define NSUMMARY (sizeof SUMMARY_WHEN / sizeof SUMMARY_WHEN[0])

static int is_summary_metric(const char *name)
{
    for (size_t m = 0; m < NSUMMARY; m++) {
        size_t off = strncmp(name, "du_", 3) == 0 ? 3 : strncmp(name, "size_", 5) == 0 ? 5 : 0;

        if (off && strcmp(name + off, SUMMARY_WHEN[m]) == 0)
            return 1;
    }
    return 0;
}

/* Engine-reported figures (Moor's stats) and the failure, if any. */
static void print_engine_extras(const engine_run_t *er)
{
    int shown = 0;

    for (int i = 0; i < er->nmetric; i++) {
        if (is_summary_metric(er->metric[i].name))
            continue;
        if (!shown++)
            printf("\n%s's own stats:\n", er->a->name);
        printf("  %-40s %.4g\n", er->metric[i].name, er->metric[i].value);
    }
    if (er->error[0])
        printf("%s FAILED: %s\n", er->a->name, er->error);
}

/* "123.4 MiB" into out, or "-" when v is missing. */
static const char *fmt_mib(char *out, size_t size, int has, double v)
{
    if (has)
        snprintf(out, size, "%.1f MiB", v / 1048576.0);
    else
        snprintf(out, size, "-");
    return out;
}

/* One footprint table (prefix "size_" or "du_") with its ratio lines. */
static void print_disk_table(const engine_run_t *runs, int n, const char *prefix, const char *title)
{
    const engine_run_t *moor = find_engine(runs, n, "moor");
    const engine_run_t *rocks = find_engine(runs, n, "rocksdb");
    const engine_run_t *level = find_engine(runs, n, "leveldb");
    char cell[32], name[48];

    printf("\n%s\n%-8s", title, "engine");
    for (size_t m = 0; m < NSUMMARY; m++)
        printf(" %18s", SUMMARY_WHEN[m]);
    printf("\n");
    for (int e = 0; e < n; e++) {
        printf("%-8s", runs[e].a->name);
        for (size_t m = 0; m < NSUMMARY; m++) {
            double v = 0;
            int has;

            snprintf(name, sizeof name, "%s%s", prefix, SUMMARY_WHEN[m]);
            has = get_metric(&runs[e], name, &v);
            printf(" %18s", fmt_mib(cell, sizeof cell, has, v));
        }
        printf("\n");
    }
    for (size_t m = 0; moor && m < NSUMMARY; m++) {
        double vm = 0, vr = 0, vl = 0;
        int hm, hr, hl;

        snprintf(name, sizeof name, "%s%s", prefix, SUMMARY_WHEN[m]);
        hm = get_metric(moor, name, &vm);
        hr = rocks && get_metric(rocks, name, &vr);
        hl = level && get_metric(level, name, &vl);
        if (hm)
            print_ratio_line(name, vm, vr, hr, vl, hl, "  (<1 = moor smaller)");
    }
}

static void print_summary_table(const engine_run_t *runs, int n, const engine_run_t *base)
{
    const engine_run_t *moor = find_engine(runs, n, "moor");
    const engine_run_t *rocks = find_engine(runs, n, "rocksdb");
    const engine_run_t *level = find_engine(runs, n, "leveldb");
    char cell[32];

    printf("\nfootprints: after_fillseq and at_end after close; after_fillrandom while open"
           " (a flush or compaction may be running)");
    print_disk_table(runs, n, "size_", "bytes in the database's files:");
    print_disk_table(runs, n, "du_", "bytes allocated (du; includes preallocated log space):");
    printf("\npeak RSS of each engine's process (the harness alone: %.1f MiB):\n",
           base->maxrss_kb / 1024.0);
    for (int e = 0; e < n; e++)
        printf("%-8s %18s\n", runs[e].a->name,
               fmt_mib(cell, sizeof cell, 1, runs[e].maxrss_kb * 1024.0));
    if (moor)
        print_ratio_line("peak_rss", (double)moor->maxrss_kb, rocks ? rocks->maxrss_kb : 0,
                         rocks != NULL, level ? level->maxrss_kb : 0, level != NULL,
                         "  (<1 = moor smaller)");
    for (int e = 0; e < n; e++)
        print_engine_extras(&runs[e]);
}

static void print_json(const engine_run_t *runs, int n, const bench_cfg_t *cfg)
{
    const engine_run_t *moor = find_engine(runs, n, "moor");

    printf("{\"config\":\"bench_engine\",\"num\":%" PRIu64 ",\"reads\":%" PRIu64
           ",\"seeks\":%" PRIu64 ",\"scan\":%u,\"sync_ops\":%" PRIu64 ",\"conc_ops\":%" PRIu64
           ",\"threads\":%u,\"max_secs\":%.0f,\"seed\":%" PRIu64 ",\"key_bytes\":%d"
           ",\"value_bytes\":%d}\n",
           cfg->num, cfg->reads, cfg->seeks, cfg->scan_len, cfg->sync_ops, cfg->conc_ops,
           cfg->threads, cfg->max_secs, cfg->seed, KEY_LEN, VAL_LEN);

    for (size_t w = 0; w < NWORKLOADS; w++) {
        for (int e = 0; e < n; e++) {
            const result_t *r = &runs[e].res[w];

            if (!runs[e].has[w])
                continue;
            printf("{\"workload\":\"%s\",\"engine\":\"%s\",\"ops\":%" PRIu64
                   ",\"secs\":%.6f,\"ops_per_sec\":%.1f,\"mb_per_sec\":%.3f,"
                   "\"micros_per_op\":%.3f,\"truncated\":%s",
                   WORKLOADS[w], runs[e].a->name, r->ops, r->secs, ops_per_sec(r), mib_per_sec(r),
                   micros_per_op(r), r->truncated ? "true" : "false");
            if (reports_found(WORKLOADS[w]))
                printf(",\"found\":%" PRIu64, r->found);
            if (r->p50_us >= 0)
                printf(",\"p50_us\":%.1f,\"p99_us\":%.1f", r->p50_us, r->p99_us);
            printf(",\"num\":%" PRIu64 "}\n", cfg->num);
        }
        for (int e = 0; moor && moor->has[w] && e < n; e++) {
            if (&runs[e] == moor || !runs[e].has[w] || ops_per_sec(&runs[e].res[w]) <= 0)
                continue;
            printf("{\"workload\":\"%s\",\"ratio\":\"moor/%s\",\"ops_per_sec_ratio\":%.4f}\n",
                   WORKLOADS[w], runs[e].a->name,
                   ops_per_sec(&moor->res[w]) / ops_per_sec(&runs[e].res[w]));
        }
    }
    for (int e = 0; e < n; e++) {
        printf("{\"engine\":\"%s\",\"peak_rss_bytes\":%ld", runs[e].a->name,
               runs[e].maxrss_kb * 1024L);
        for (int i = 0; i < runs[e].nmetric; i++) {
            double v = runs[e].metric[i].value;

            /* JSON has no NaN: a ratio over zero bytes is null. */
            if (isfinite(v))
                printf(",\"%s\":%.15g", runs[e].metric[i].name, v);
            else
                printf(",\"%s\":null", runs[e].metric[i].name);
        }
        printf(",\"ok\":%s}\n", runs[e].error[0] ? "false" : "true");
    }
}

/* ---- command line -------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f, "usage: bench_engine [options]\n"
               "  --num N          keys in the data set; fill/overwrite/delete ops (1000000)\n"
               "  --reads N        ops of readrandom and readmissing (default num)\n"
               "  --seeks N        ops of seekrandom (default num/20, at least 100)\n"
               "  --scan N         entries read after each seek (100)\n"
               "  --sync-ops N     ops of fillsync (5000)\n"
               "  --conc-ops N     ops of fillsync_8t, all threads together (20000)\n"
               "  --threads N      writers of fillsync_8t (8)\n"
               "  --max-secs S     time cap per workload; results are marked truncated (60)\n"
               "  --engines LIST   comma-separated, run in this order (moor,rocksdb,leveldb)\n"
               "  --dir DIR        parent of the per-engine databases (build/bench-data)\n"
               "  --seed N         random seed, the same for every engine (301)\n"
               "  --workloads LIST comma-separated subset to run (all); fillrandom and\n"
               "                   overwrite also run when a later read/delete workload does,\n"
               "                   since they build the database it reads\n");
}

static int parse_u64(const char *s, uint64_t *out)
{
    char *end;
    unsigned long long v;

    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-')
        return -1;
    *out = v;
    return 0;
}

static int parse_engines(bench_cfg_t *cfg, const char *list)
{
    char buf[256], *save = NULL;

    snprintf(buf, sizeof buf, "%s", list);
    cfg->nengines = 0;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        int found = -1;

        for (int i = 0; i < MAX_ENGINES; i++)
            if (strcmp(BENCH_ADAPTERS[i]->name, tok) == 0)
                found = i;
        if (found < 0 || cfg->nengines == MAX_ENGINES) {
            fprintf(stderr, "bench_engine: unknown or repeated engine '%s'\n", tok);
            return -1;
        }
        for (int i = 0; i < cfg->nengines; i++)
            if (cfg->engines[i] == found) {
                fprintf(stderr, "bench_engine: engine '%s' given twice\n", tok);
                return -1;
            }
        cfg->engines[cfg->nengines++] = found;
    }
    return cfg->nengines ? 0 : -1;
}

static int parse_workloads(bench_cfg_t *cfg, const char *list)
{
    char buf[256], *save = NULL;

    snprintf(buf, sizeof buf, "%s", list);
    cfg->want = 0;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        int w = workload_index(tok);

        if (w < 0) {
            fprintf(stderr, "bench_engine: unknown workload '%s'\n", tok);
            return -1;
        }
        cfg->want |= 1u << w;
    }
    return cfg->want ? 0 : -1;
}

static int parse_args(int argc, char **argv, bench_cfg_t *cfg)
{
    static const struct option longopts[] = {{"num", 1, 0, 'n'},      {"reads", 1, 0, 'r'},
                                             {"seeks", 1, 0, 's'},    {"scan", 1, 0, 'l'},
                                             {"sync-ops", 1, 0, 'y'}, {"conc-ops", 1, 0, 'c'},
                                             {"threads", 1, 0, 't'},  {"max-secs", 1, 0, 'm'},
                                             {"engines", 1, 0, 'e'},  {"dir", 1, 0, 'd'},
                                             {"seed", 1, 0, 'S'},     {"workloads", 1, 0, 'w'},
                                             {"help", 0, 0, 'h'},     {0, 0, 0, 0}};
    uint64_t v, reads = 0, seeks = 0;
    int has_reads = 0, has_seeks = 0, opt;

    *cfg = (bench_cfg_t){.num = 1000000,
                         .sync_ops = 5000,
                         .conc_ops = 20000,
                         .scan_len = 100,
                         .threads = 8,
                         .max_secs = 60,
                         .seed = 301,
                         .dir = "build/bench-data",
                         .want = WANT_ALL};
    if (parse_engines(cfg, "moor,rocksdb,leveldb") < 0)
        return -1;
    while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        if (opt == 'h') {
            usage(stdout);
            exit(0);
        }
        if (opt == 'e') {
            if (parse_engines(cfg, optarg) < 0)
                return -1;
            continue;
        }
        if (opt == 'd') {
            cfg->dir = optarg;
            continue;
        }
        if (opt == 'w') {
            if (parse_workloads(cfg, optarg) < 0)
                return -1;
            continue;
        }
        if (opt == '?' || parse_u64(optarg, &v) < 0) {
            if (opt != '?')
                fprintf(stderr, "bench_engine: bad number '%s'\n", optarg);
            return -1;
        }
        switch (opt) {
        case 'n': cfg->num = v; break;
        case 'r': reads = v, has_reads = 1; break;
        case 's': seeks = v, has_seeks = 1; break;
        case 'l': cfg->scan_len = (unsigned)v; break;
        case 'y': cfg->sync_ops = v; break;
        case 'c': cfg->conc_ops = v; break;
        case 't': cfg->threads = (unsigned)(v ? (v > 64 ? 64 : v) : 1); break;
        case 'm': cfg->max_secs = (double)v; break;
        case 'S': cfg->seed = v; break;
        }
    }
    if (optind < argc || cfg->num == 0 || cfg->num > UINT32_MAX) {
        fprintf(stderr, "bench_engine: --num must be 1..%u, no positional arguments\n", UINT32_MAX);
        return -1;
    }
    cfg->reads = has_reads ? reads : cfg->num;
    cfg->seeks = has_seeks ? seeks : (cfg->num / 20 < 100 ? 100 : cfg->num / 20);
    return 0;
}

static void print_header(const bench_cfg_t *cfg)
{
    printf("bench_engine: num %" PRIu64 ", reads %" PRIu64 ", seeks %" PRIu64
           " x %u, fillsync %" PRIu64 ", fillsync_8t %" PRIu64
           " (%u threads), cap %.0f s/workload, seed %" PRIu64 "\n",
           cfg->num, cfg->reads, cfg->seeks, cfg->scan_len, cfg->sync_ops, cfg->conc_ops,
           cfg->threads, cfg->max_secs, cfg->seed);
    printf("data: %d-byte keys, %d-byte values (half random, half repeated)\n", KEY_LEN, VAL_LEN);
    printf("all engines: commit log on; no sync per write except fillsync*; bloom %d bits/key;"
           " %zu MiB block cache; %zu MiB write buffer; %d-byte blocks\n",
           BENCH_BLOOM_BITS, BENCH_CACHE_BYTES >> 20, BENCH_WRITE_BUFFER_BYTES >> 20,
           BENCH_BLOCK_BYTES);
    printf("  moor:    zstd level %d; sync_mode NONE (fillsync*: ALWAYS, blocking puts)\n",
           BENCH_ZSTD_LEVEL);
    printf("  rocksdb: zstd at its default level; sync=false (fillsync*: sync=true)\n");
    printf("  leveldb: %d.%d, snappy (no zstd in LevelDB); sync=false (fillsync*: sync=true)\n",
           leveldb_major_version(), leveldb_minor_version());
    printf("MB/s counts key+value bytes moved (MiB); seekrandom ops are seeks of a fresh"
           " iterator each\n\n");
}

int main(int argc, char **argv)
{
    bench_cfg_t cfg;
    engine_run_t runs[MAX_ENGINES], base;

    if (parse_args(argc, argv, &cfg) < 0) {
        usage(stderr);
        return 2;
    }
    if (mkdir_p(cfg.dir) < 0) {
        fprintf(stderr, "bench_engine: mkdir %s: %s\n", cfg.dir, strerror(errno));
        return 1;
    }
    print_header(&cfg);
    run_child(&cfg, NULL, &base);
    for (int i = 0; i < cfg.nengines; i++) {
        run_child(&cfg, BENCH_ADAPTERS[cfg.engines[i]], &runs[i]);
        if (runs[i].error[0])
            fprintf(stderr, "[%s] FAILED: %s\n", runs[i].a->name, runs[i].error);
    }
    rmdir(cfg.dir); /* only if empty: never remove what we did not create */
    print_workload_table(runs, cfg.nengines);
    print_summary_table(runs, cfg.nengines, &base);
    printf("\n");
    print_json(runs, cfg.nengines, &cfg);
    for (int i = 0; i < cfg.nengines; i++)
        if (runs[i].error[0])
            return 1;
    return 0;
}
