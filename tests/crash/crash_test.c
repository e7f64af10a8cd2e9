/*
 * crash_test.c -- kill -9 a writing engine at random moments and check that
 * every acknowledged write survives and nothing is corrupt.
 *
 *   crash_test [--cycles N | --long] [--dir DIR] [--seed S]
 *
 * Each cycle forks a child that opens the database (MOOR_SYNC_ALWAYS, a
 * small memtable so flushes and compactions run during the test) and
 * writes from 2-4 threads.  Thread t owns the keys "t<t>-<k>" and performs
 * a deterministic sequence of operations (puts, deletes, batches of both)
 * generated from (seed, cycle, t); operation j of cycle c writes version
 * (c + 1) << 32 | j, and every value is derived from (key, version) with a
 * crc32c inside.  After each acknowledged operation the thread sends
 * (t, j) down a pipe.  The parent kills the child with SIGKILL 50-500 ms
 * after it is ready (sometimes earlier, during its recovery), reopens the
 * database and checks it against a model: for each thread with A acked
 * operations, the database must show the state after exactly A operations
 * or after A + 1 (the one in flight may or may not have become durable,
 * batches all or nothing); keys of threads that did not run are unchanged.
 * The database accumulates across cycles; the model follows what the
 * database shows for the in-flight operations.
 *
 * Exit status 0 when every cycle passed; on a failure the seed is printed
 * (MOOR_SEED or --seed replays the same operation sequences; kill timing
 * still varies).  Each cycle is bounded by a watchdog.
 */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "engine/engine.h"
#include "util/crc32c.h"
#include "util/err.h"

#define MAX_THREADS 4
#define KEYS_PER_THREAD 400
#define MAX_BATCH 5
#define VALUE_HEADER 21 /* crc u32 | slot u32 | key u32 | version u64 | len & 0xff u8 */
#define ACK_READY UINT32_C(0xfffe)
#define ACK_ERROR UINT32_C(0xffff)
#define CYCLE_WATCHDOG_S 60
#define READY_TIMEOUT_MS 30000

/* One operation of a thread: 1 key (put or delete) or a batch of distinct keys. */
typedef struct op {
    int n;
    int key[MAX_BATCH];
    int del[MAX_BATCH];
} op_t;

typedef struct ack {
    uint32_t slot; /* thread, or ACK_READY / ACK_ERROR */
    uint32_t j;    /* operation number (1-based), or -error code */
} ack_t;

static uint64_t g_seed;
static const char *g_dir;

/* ---- deterministic generation ------------------------------------------ */

static uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15u;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9u;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebu;
    return x ^ (x >> 31);
}

static uint64_t rng_next(uint64_t *s)
{
    *s += 0x9e3779b97f4a7c15u;
    return mix64(*s);
}

static uint64_t op_stream_seed(int cycle, int slot)
{
    return mix64(g_seed ^ mix64((uint64_t)cycle * 1000003u + (uint64_t)slot));
}

/* The next operation of a thread's stream. */
static void op_gen(uint64_t *s, op_t *op)
{
    uint64_t r = rng_next(s) % 100;
    int i, j;

    op->n = r < 80 ? 1 : 2 + (int)(rng_next(s) % (MAX_BATCH - 1));
    for (i = 0; i < op->n; i++) {
        int k, dup;

        do { /* distinct keys within a batch */
            k = (int)(rng_next(s) % KEYS_PER_THREAD);
            for (dup = 0, j = 0; j < i; j++)
                dup |= op->key[j] == k;
        } while (dup);
        op->key[i] = k;
        op->del[i] = r < 12 || rng_next(s) % 10 == 0;
    }
}

static uint64_t version_of(int cycle, uint32_t j)
{
    return (uint64_t)(cycle + 1) << 32 | j;
}

static size_t key_of(char *out, int slot, int k)
{
    return (size_t)sprintf(out, "t%d-%05d", slot, k);
}

static void put32(unsigned char *p, uint32_t v)
{
    memcpy(p, &v, 4);
}
static void put64(unsigned char *p, uint64_t v)
{
    memcpy(p, &v, 8);
}
static uint32_t get32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
static uint64_t get64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* The value of (slot, key, version): header, pseudo-random payload, and a
 * crc32c of everything after the crc field.  Returns a malloc'ed buffer. */
static unsigned char *value_make(int slot, int k, uint64_t version, size_t *len)
{
    uint64_t h = mix64(version * 31 + (uint64_t)slot * 7919 + (uint64_t)k), s = h;
    size_t n = VALUE_HEADER + (h % 64 == 0 ? 20000 + h % 4096 : h % 3000), i;
    unsigned char *v = malloc(n);

    if (!v)
        abort();
    put32(v + 4, (uint32_t)slot);
    put32(v + 8, (uint32_t)k);
    put64(v + 12, version);
    v[20] = (unsigned char)(n & 0xff);
    for (i = VALUE_HEADER; i < n; i++)
        v[i] = (unsigned char)(i % 8 == 0 ? rng_next(&s) : v[i - 1] * 33 + 7);
    put32(v, moor_crc32c(v + 4, n - 4));
    *len = n;
    return v;
}

/* Checks a value read back: crc, owner, and byte-for-byte equality with
 * value_make of the version it claims.  Returns that version, or 0 if the
 * value is corrupt or belongs to another key. */
static uint64_t value_check(int slot, int k, const unsigned char *v, size_t len)
{
    unsigned char *want;
    size_t wlen;
    uint64_t version;
    int ok;

    if (len < VALUE_HEADER || get32(v) != moor_crc32c(v + 4, len - 4) ||
        get32(v + 4) != (uint32_t)slot || get32(v + 8) != (uint32_t)k)
        return 0;
    version = get64(v + 12);
    want = value_make(slot, k, version, &wlen);
    ok = wlen == len && memcmp(want, v, len) == 0;
    free(want);
    return ok ? version : 0;
}

/* ---- the child: writers ------------------------------------------------- */

typedef struct writer {
    moor_engine_t *e;
    int cycle, slot, fd;
} writer_t;

static void child_send(int fd, uint32_t slot, uint32_t j)
{
    ack_t a = {slot, j};

    /* 8 bytes < PIPE_BUF: atomic even with several writer threads. */
    if (write(fd, &a, sizeof(a)) != (ssize_t)sizeof(a))
        _exit(5);
}

static int writer_do(moor_engine_t *e, moor_batch_t *b, int cycle, int slot, uint32_t j,
                     const op_t *op)
{
    uint64_t version = version_of(cycle, j);
    int i, rc = 0;

    moor_batch_clear(b);
    for (i = 0; i < op->n && rc == 0; i++) {
        char key[32];
        size_t klen = key_of(key, slot, op->key[i]), vlen;
        unsigned char *v;

        if (op->del[i]) {
            rc = op->n == 1 ? moor_engine_delete(e, key, klen) : moor_batch_delete(b, key, klen);
            continue;
        }
        v = value_make(slot, op->key[i], version, &vlen);
        rc = op->n == 1 ? moor_engine_put(e, key, klen, v, vlen)
                        : moor_batch_put(b, key, klen, v, vlen);
        free(v);
    }
    if (rc == 0 && op->n > 1)
        rc = moor_engine_write(e, b);
    return rc;
}

static void *writer_main(void *arg)
{
    writer_t *w = arg;
    uint64_t s = op_stream_seed(w->cycle, w->slot);
    moor_batch_t *b = moor_batch_new();
    uint32_t j;

    if (!b)
        _exit(6);
    for (j = 1;; j++) {
        op_t op;
        int rc;

        op_gen(&s, &op);
        rc = writer_do(w->e, b, w->cycle, w->slot, j, &op);
        if (rc != 0) {
            child_send(w->fd, ACK_ERROR, (uint32_t)-rc);
            _exit(4);
        }
        child_send(w->fd, (uint32_t)w->slot, j);
    }
    return NULL;
}

static void engine_opts(moor_engine_opts_t *o)
{
    moor_engine_opts_default(o);
    o->sync_mode = MOOR_SYNC_ALWAYS;
    o->memtable_bytes = 256 * 1024;
    o->table_bytes = 128 * 1024;
    o->block_size = 4096;
    o->cache_bytes = 1024 * 1024;
    o->l0_compact = 2;
    o->level1_bytes = 512 * 1024;
}

static void child_run(int cycle, int nthreads, int fd)
{
    moor_engine_opts_t o;
    moor_engine_t *e = NULL;
    writer_t w[MAX_THREADS];
    pthread_t th[MAX_THREADS];
    int i, rc;

    engine_opts(&o);
    rc = moor_engine_open(g_dir, &o, &e);
    if (rc != 0) {
        fprintf(stderr, "crash_test child: open %s: %s (%s)\n", g_dir, moor_err_name(rc),
                moor_diag_msg(rc));
        child_send(fd, ACK_ERROR, (uint32_t)-rc);
        _exit(3);
    }
    child_send(fd, ACK_READY, 0);
    for (i = 0; i < nthreads; i++) {
        w[i] = (writer_t){e, cycle, i, fd};
        if (pthread_create(&th[i], NULL, writer_main, &w[i]) != 0)
            _exit(6);
    }
    for (i = 0; i < nthreads; i++)
        pthread_join(th[i], NULL);
    _exit(0); /* not reached: writers run until killed */
}

/* ---- the parent: kill, then verify -------------------------------------- */

/* The model: per thread slot and key, the version present (0 = absent). */
static uint64_t model[MAX_THREADS][KEYS_PER_THREAD];

typedef struct cycle_run {
    int cycle, nthreads;
    unsigned kill_ms;
    int early; /* killed before waiting for ready */
    uint32_t acked[MAX_THREADS];
    int ready;
    int child_error;       /* error code the child reported, 0 if none */
    int early_exit_status; /* -1 if it was killed as planned */
} cycle_run_t;

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Accounts one ack; returns -1 on a protocol violation. */
static int take_ack(cycle_run_t *cr, const ack_t *a)
{
    if (a->slot == ACK_READY) {
        cr->ready = 1;
        return 0;
    }
    if (a->slot == ACK_ERROR) {
        cr->child_error = -(int)a->j;
        return 0;
    }
    if (a->slot >= (uint32_t)cr->nthreads || a->j != cr->acked[a->slot] + 1) {
        fprintf(stderr, "cycle %d: bad ack (slot %u op %u, expected op %u)\n", cr->cycle, a->slot,
                a->j, a->slot < MAX_THREADS ? cr->acked[a->slot] + 1 : 0);
        return -1;
    }
    cr->acked[a->slot] = a->j;
    return 0;
}

/* Reads acks until deadline (0 = until EOF).  Returns -1 on a bad ack. */
static int read_acks(int fd, cycle_run_t *cr, uint64_t deadline, unsigned char *buf, size_t *have)
{
    for (;;) {
        int timeout = -1;
        ssize_t n;
        size_t off;

        if (deadline) {
            uint64_t t = now_ms();
            if (t >= deadline)
                return 0;
            timeout = (int)(deadline - t);
        }
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, timeout) <= 0)
            continue;
        n = read(fd, buf + *have, 4096 - *have);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return 0; /* EOF: the child is gone */
        *have += (size_t)n;
        for (off = 0; off + sizeof(ack_t) <= *have; off += sizeof(ack_t)) {
            ack_t a;
            int was_ready = cr->ready;

            memcpy(&a, buf + off, sizeof(a));
            if (take_ack(cr, &a))
                return -1;
            if (!was_ready && cr->ready && deadline && !cr->early)
                deadline = now_ms() + cr->kill_ms; /* the kill timer starts at ready */
        }
        memmove(buf, buf + off, *have - off);
        *have -= off;
    }
}

/* Forks the writer, kills it per plan, collects every ack.  0 or -1. */
static int run_child(cycle_run_t *cr)
{
    unsigned char buf[4096];
    size_t have = 0;
    int fds[2], status, rc;
    pid_t pid;

    if (pipe(fds) != 0)
        return -1;
    pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        close(fds[0]);
        child_run(cr->cycle, cr->nthreads, fds[1]);
    }
    close(fds[1]);
    /* An early kill counts from the fork; a normal one from ready (read_acks
     * moves the deadline); READY_TIMEOUT_MS bounds a child that hangs. */
    rc = read_acks(fds[0], cr, now_ms() + (cr->early ? cr->kill_ms : READY_TIMEOUT_MS), buf, &have);
    kill(pid, SIGKILL);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (rc == 0)
        rc = read_acks(fds[0], cr, 0, buf, &have);
    close(fds[0]);
    cr->early_exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    if (rc == 0 && !cr->early && !cr->ready) {
        fprintf(stderr, "cycle %d: the writer never became ready\n", cr->cycle);
        rc = -1;
    }
    return rc;
}

/* Version of (slot, k) in the database: 0 absent, UINT64_MAX on error. */
static uint64_t db_version(moor_engine_t *e, int slot, int k, int cycle)
{
    char key[32];
    size_t klen = key_of(key, slot, k), vlen = 0;
    void *v = NULL;
    int rc = moor_engine_get(e, key, klen, &v, &vlen);
    uint64_t ver;

    if (rc == MOOR_ENOTFOUND)
        return 0;
    if (rc != 0) {
        fprintf(stderr, "cycle %d: get %s: %s (%s)\n", cycle, key, moor_err_name(rc),
                moor_diag_msg(rc));
        return UINT64_MAX;
    }
    ver = value_check(slot, k, v, vlen);
    moor_engine_free(v);
    if (ver == 0) {
        fprintf(stderr, "cycle %d: %s has a corrupt value (%zu bytes)\n", cycle, key, vlen);
        return UINT64_MAX;
    }
    return ver;
}

static void apply_op(uint64_t *state, const op_t *op, uint64_t version)
{
    int i;

    for (i = 0; i < op->n; i++)
        state[op->key[i]] = op->del[i] ? 0 : version;
}

/* Checks one thread slot; on success updates model[slot] to what the
 * database shows.  Returns the number of mismatches; *inflight_applied is
 * set when the unacknowledged operation turned out durable. */
static int verify_slot(moor_engine_t *e, const cycle_run_t *cr, int slot, int *inflight_applied)
{
    uint64_t s0[KEYS_PER_THREAD], s1[KEYS_PER_THREAD], got[KEYS_PER_THREAD];
    int k, bad = 0, match0 = 1, match1 = 1;

    memcpy(s0, model[slot], sizeof(s0));
    if (slot < cr->nthreads) {
        uint64_t s = op_stream_seed(cr->cycle, slot);
        uint32_t j;
        op_t op;

        for (j = 1; j <= cr->acked[slot]; j++) {
            op_gen(&s, &op);
            apply_op(s0, &op, version_of(cr->cycle, j));
        }
        memcpy(s1, s0, sizeof(s1));
        op_gen(&s, &op);
        apply_op(s1, &op, version_of(cr->cycle, j));
    } else {
        memcpy(s1, s0, sizeof(s1));
    }
    for (k = 0; k < KEYS_PER_THREAD; k++) {
        got[k] = db_version(e, slot, k, cr->cycle);
        if (got[k] == UINT64_MAX)
            return 1;
        match0 &= got[k] == s0[k];
        match1 &= got[k] == s1[k];
    }
    if (!match0 && !match1) {
        for (k = 0; k < KEYS_PER_THREAD && bad < 8; k++) {
            if (got[k] == s0[k] || got[k] == s1[k])
                continue;
            fprintf(stderr,
                    "cycle %d: t%d-%05d has version %#" PRIx64 ", want %#" PRIx64
                    " (after %u acked ops) or %#" PRIx64 " (one more)\n",
                    cr->cycle, slot, k, got[k], s0[k], cr->acked[slot], s1[k]);
            bad++;
        }
        if (!bad)
            fprintf(stderr, "cycle %d: thread %d's in-flight batch is half applied\n", cr->cycle,
                    slot);
        return bad ? bad : 1;
    }
    *inflight_applied += !match0;
    memcpy(model[slot], got, sizeof(got));
    return 0;
}

/* A full scan must show exactly the model's live keys with valid values. */
static int verify_scan(moor_engine_t *e, int cycle)
{
    moor_engine_iter_t *it = moor_engine_iter_new(e, NULL, 0, NULL, 0);
    int slot = 0, k = 0, bad = 0, st;

    if (!it)
        return 1;
    for (moor_engine_iter_seek_first(it); moor_engine_iter_valid(it) && !bad;
         moor_engine_iter_next(it)) {
        size_t klen, vlen;
        const char *key = moor_engine_iter_key(it, &klen);
        const unsigned char *v = moor_engine_iter_value(it, &vlen);
        char want[32];

        while (slot < MAX_THREADS && model[slot][k] == 0) /* next live key of the model */
            if (++k == KEYS_PER_THREAD)
                k = 0, slot++;
        if (slot == MAX_THREADS) {
            fprintf(stderr, "cycle %d: scan: unexpected key %.*s\n", cycle, (int)klen, key);
            bad++;
            break;
        }
        key_of(want, slot, k);
        if (klen != strlen(want) || memcmp(key, want, klen) != 0 ||
            value_check(slot, k, v, vlen) != model[slot][k]) {
            fprintf(stderr, "cycle %d: scan: %.*s where %s (version %#" PRIx64 ") was due\n", cycle,
                    (int)klen, key, want, model[slot][k]);
            bad++;
        }
        if (++k == KEYS_PER_THREAD)
            k = 0, slot++;
    }
    st = moor_engine_iter_status(it);
    if (st != 0) {
        fprintf(stderr, "cycle %d: scan status %s\n", cycle, moor_err_name(st));
        bad++;
    }
    for (; !bad && slot < MAX_THREADS; slot++, k = 0)
        for (; k < KEYS_PER_THREAD; k++)
            if (model[slot][k]) {
                fprintf(stderr, "cycle %d: scan: t%d-%05d missing\n", cycle, slot, k);
                bad++;
                break;
            }
    moor_engine_iter_free(it);
    return bad;
}

static int verify(const cycle_run_t *cr, int *inflight, uint32_t *tables)
{
    moor_engine_opts_t o;
    moor_engine_t *e = NULL;
    moor_engine_stats_t st;
    int rc, bad = 0, slot;

    engine_opts(&o);
    rc = moor_engine_open(g_dir, &o, &e);
    if (rc != 0) {
        fprintf(stderr, "cycle %d: reopen: %s (%s)\n", cr->cycle, moor_err_name(rc),
                moor_diag_msg(rc));
        return 1;
    }
    for (slot = 0; slot < MAX_THREADS; slot++)
        bad += verify_slot(e, cr, slot, inflight);
    if (!bad)
        bad += verify_scan(e, cr->cycle);
    moor_engine_stats(e, &st);
    *tables = 0;
    for (slot = 0; slot < 7; slot++)
        *tables += st.tables[slot];
    rc = moor_engine_close(e);
    if (rc != 0) {
        fprintf(stderr, "cycle %d: close: %s (%s)\n", cr->cycle, moor_err_name(rc),
                moor_diag_msg(rc));
        bad++;
    }
    return bad;
}

static void on_watchdog(int sig)
{
    static const char msg[] = "crash_test: a cycle exceeded its deadline (hang)\n";

    (void)sig;
    if (write(2, msg, sizeof(msg) - 1) < 0)
        _exit(3);
    _exit(3);
}

static int run_cycle(int cycle, int ncycles, uint64_t *rng)
{
    cycle_run_t cr = {.cycle = cycle};
    int inflight = 0, bad;
    uint32_t tables = 0, total = 0;

    cr.nthreads = 2 + (int)(rng_next(rng) % 3);
    cr.early = rng_next(rng) % 5 == 0;
    cr.kill_ms = cr.early ? (unsigned)(rng_next(rng) % 60) : 50 + (unsigned)(rng_next(rng) % 451);
    alarm(CYCLE_WATCHDOG_S);
    if (run_child(&cr) != 0) {
        fprintf(stderr, "cycle %d: running the writer failed\n", cycle);
        return 1;
    }
    if (cr.child_error || cr.early_exit_status >= 0) {
        fprintf(stderr, "cycle %d: the writer failed by itself: %s, exit status %d\n", cycle,
                moor_err_name(cr.child_error), cr.early_exit_status);
        return 1;
    }
    bad = verify(&cr, &inflight, &tables);
    alarm(0);
    for (int i = 0; i < cr.nthreads; i++)
        total += cr.acked[i];
    printf("cycle %d/%d: %d threads, killed %s%u ms, %u acked ops, %d in-flight applied, "
           "%u tables: %s\n",
           cycle + 1, ncycles, cr.nthreads, cr.early ? "early at " : "at ", cr.kill_ms, total,
           inflight, tables, bad ? "FAILED" : "ok");
    fflush(stdout);
    return bad;
}

static int mkdir_p(const char *path)
{
    char tmp[4096];
    size_t i, n = strlen(path);

    if (n >= sizeof(tmp))
        return -1;
    memcpy(tmp, path, n + 1);
    for (i = 1; i <= n; i++)
        if (tmp[i] == '/' || tmp[i] == '\0') {
            char c = tmp[i];
            tmp[i] = '\0';
            if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
                return -1;
            tmp[i] = c;
        }
    return 0;
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(p) != 0 && errno != ENOENT;
}

/* rm -rf dir (a database from an earlier run must not leak into this one). */
static void clear_dir(const char *dir)
{
    if (nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0 && errno != ENOENT)
        fprintf(stderr, "crash_test: could not clear %s: %s\n", dir, strerror(errno));
}

static void usage(void)
{
    fprintf(stderr, "usage: crash_test [--cycles N | --long] [--dir DIR] [--seed S]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *dir = "/tmp/moor-crash", *env = getenv("MOOR_SEED");
    int ncycles = 20, passed = 0, failed = 0, i;
    uint64_t rng;
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    g_seed = env && *env
                 ? strtoull(env, NULL, 0)
                 : (uint64_t)ts.tv_sec * 1000003u ^ (uint64_t)ts.tv_nsec ^ (uint64_t)getpid();
    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--cycles") && i + 1 < argc)
            ncycles = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--long"))
            ncycles = 300;
        else if (!strcmp(argv[i], "--dir") && i + 1 < argc)
            dir = argv[++i];
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc)
            g_seed = strtoull(argv[++i], NULL, 0);
        else
            usage();
    }
    if (ncycles <= 0)
        usage();
    g_dir = dir;
    rng = g_seed;
    signal(SIGALRM, on_watchdog);
    signal(SIGPIPE, SIG_IGN);
    printf("crash_test: %d cycles in %s, seed %" PRIu64 " (replay with --seed %" PRIu64 ")\n",
           ncycles, dir, g_seed, g_seed);
    fflush(stdout);
    clear_dir(dir);
    if (mkdir_p(dir) != 0) {
        fprintf(stderr, "crash_test: cannot create %s: %s\n", dir, strerror(errno));
        return 2;
    }
    for (i = 0; i < ncycles && !failed; i++) {
        if (run_cycle(i, ncycles, &rng) == 0)
            passed++;
        else
            failed++;
    }
    printf("crash_test: %d passed, %d failed, %d not run (seed %" PRIu64 ")\n", passed, failed,
           ncycles - passed - failed, g_seed);
    if (failed) {
        fprintf(stderr, "crash_test: FAILED with seed %" PRIu64 "; database left in %s\n", g_seed,
                dir);
        return 1;
    }
    clear_dir(dir);
    return 0;
}
