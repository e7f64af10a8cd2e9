/*
 * bench.c -- `moor bench`: many connections, each keeping `pipeline`
 * requests in flight, driven by one thread with one poll() over all of
 * them (the client's non-blocking calls: moor_client_io_nowait and
 * moor_client_recv_nowait), so that the load generator needs no locks and
 * a core stays free for the node on a small machine.
 *
 * Requests are get or put (fraction `ratio` of gets) of keys "key:<n>"
 * drawn uniformly from [0, keys), values `value_size` bytes of bin; or,
 * with `--call NAME`, every request is the `call` method with params
 * [NAME, key] (a Lua handler driven the same way, the key its argument).  The
 * key space is not pre-populated: a get of a missing key is a valid
 * operation (it returns nil), so a get-only run on an empty node measures
 * the miss path; run a put-only pass first to measure hits.
 *
 * Latency is measured per request from moor_client_send to the moment its
 * answer is parsed, in nanoseconds, into a log-linear histogram: exact
 * below 256 ns, then 128 buckets per power of two (relative error under
 * 0.8%), which is ample for p50/p99/p99.9.  Percentiles report the
 * bucket's midpoint.
 *
 * When the duration is over (or on SIGINT) no new requests are sent, the
 * ones in flight are awaited for at most the client timeout, and the
 * summary is printed: a human block and one JSON line on stdout.
 *
 * Threads: the calling thread only.
 */
#include "cli/bench.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <msgpack.h>

#include "net/client.h"
#include "util/mp.h"
#include "util/clock.h"
#include "util/err.h"

/* ---- histogram ----------------------------------------------------------------- */

#define HIST_SUB_BITS 7 /* 128 sub-buckets per power of two */
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_BUCKETS ((64 - HIST_SUB_BITS) * HIST_SUB + 2 * HIST_SUB)

typedef struct hist {
    uint64_t count[HIST_BUCKETS];
    uint64_t n;   /* samples recorded */
    uint64_t max; /* largest sample */
} hist_t;

static unsigned hist_index(uint64_t v)
{
    int msb = v ? 63 - __builtin_clzll(v) : 0;
    int shift = msb > HIST_SUB_BITS ? msb - HIST_SUB_BITS : 0;

    return (unsigned)shift * HIST_SUB + (unsigned)(v >> shift);
}

/* Midpoint of bucket i: its lower bound plus half its width. */
static double hist_value(unsigned i)
{
    unsigned shift = i < 2 * HIST_SUB ? 0 : i / HIST_SUB - 1;
    uint64_t lo = (uint64_t)(i - shift * HIST_SUB) << shift;

    return (double)lo + (double)(((uint64_t)1 << shift) - 1) / 2.0;
}

static void hist_add(hist_t *h, uint64_t v)
{
    h->count[hist_index(v)]++;
    h->n++;
    if (v > h->max)
        h->max = v;
}

/* Value at quantile q (0..1), in the histogram's unit; 0 when empty. */
static double hist_quantile(const hist_t *h, double q)
{
    uint64_t want, seen = 0;

    if (h->n == 0)
        return 0;
    want = (uint64_t)(q * (double)h->n);
    if (want >= h->n)
        want = h->n - 1;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->count[i];
        if (seen > want)
            return hist_value(i) < (double)h->max ? hist_value(i) : (double)h->max;
    }
    return (double)h->max;
}

/* ---- options ------------------------------------------------------------------- */

typedef struct bench_opts {
    int conns;         /* connections */
    int pipeline;      /* requests in flight per connection */
    uint64_t keys;     /* key space size */
    size_t value_size; /* bytes per put value */
    double ratio;      /* fraction of gets */
    double duration;   /* seconds of sending */
    const char *space; /* NULL: the node's default space */
    const char *call;  /* NULL: get/put; else the handler every request calls */
    int overwrite;     /* puts carry opts.overwrite = true */
    int json;          /* --json: only the JSON line on stdout */
} bench_opts_t;

/* With a reason: the reason and a hint; without: the full help. */
static int usage(const char *why)
{
    if (why) {
        fprintf(stderr, "moor bench: %s (moor bench --help for usage)\n", why);
        return 2;
    }
    fputs("usage: moor [-h host:port] [-a token] [--timeout ms] bench [--conns N]\n"
          "         [--pipeline N] [--keys N] [--value-size BYTES] [--ratio GET-FRACTION]\n"
          "         [--duration SECONDS] [--space S] [--call HANDLER] [--overwrite] [--json]\n"
          "defaults: --conns 50 --pipeline 16 --keys 100000 --value-size 100 --ratio 0.5\n"
          "          --duration 10\n"
          "Keys are not pre-populated: a get of a missing key is a valid op (it returns\n"
          "nil); run a --ratio 0 pass first to measure gets that hit.\n"
          "--call HANDLER: every request is `call` with params [HANDLER, key] instead of\n"
          "a get or put (the Lua handler gets the bench key as its argument; --ratio,\n"
          "--value-size and --space do not apply); a handler's error answer counts as\n"
          "an error.\n"
          "--overwrite: puts carry opts overwrite = true (the write RESP SET makes: it\n"
          "replaces the key's value); without it they are blind puts, and every put of\n"
          "a key already written adds a sibling (up to sibling_max).\n"
          "--json: stdout gets only the summary's JSON line (progress stays on stderr).\n",
          stderr);
    return 2;
}

/* The numeric options, their bounds, and where each goes. */
typedef struct num_opt {
    const char *name;
    double lo, hi;
} num_opt_t;

static const num_opt_t num_opts[] = {
    {"--conns", 1, 10000},         {"--pipeline", 1, 1024}, {"--keys", 1, 1e15},
    {"--value-size", 0, 16 << 20}, {"--ratio", 0, 1},       {"--duration", 0.001, 86400},
};

static void set_num(bench_opts_t *o, int which, double v)
{
    switch (which) {
    case 0: o->conns = (int)v; break;
    case 1: o->pipeline = (int)v; break;
    case 2: o->keys = (uint64_t)v; break;
    case 3: o->value_size = (size_t)v; break;
    case 4: o->ratio = v; break;
    default: o->duration = v;
    }
}

/* 0; -1 after --help; or the exit status of a usage error (reported). */
static int parse_opts(int argc, char **argv, bench_opts_t *o)
{
    char why[128];

    *o = (bench_opts_t){50, 16, 100000, 100, 0.5, 10.0, NULL, NULL, 0, 0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        int which = -1;
        if (strcmp(a, "--help") == 0)
            return usage(NULL), -1;
        if (strcmp(a, "--overwrite") == 0 || strcmp(a, "--json") == 0) {
            *(a[2] == 'o' ? &o->overwrite : &o->json) = 1;
            continue;
        }
        for (int k = 0; k < (int)(sizeof(num_opts) / sizeof(num_opts[0])); k++)
            if (strcmp(a, num_opts[k].name) == 0)
                which = k;
        if (which < 0 && strcmp(a, "--space") != 0 && strcmp(a, "--call") != 0) {
            snprintf(why, sizeof(why), "unknown option or argument '%.60s'", a);
            return usage(why);
        }
        if (!val) {
            snprintf(why, sizeof(why), "%s needs a value", a);
            return usage(why);
        }
        i++;
        if (which < 0 && strcmp(a, "--call") == 0) {
            o->call = val;
        } else if (which < 0) {
            o->space = val;
        } else {
            char *end;
            double v;
            errno = 0;
            v = strtod(val, &end);
            if (errno || end == val || *end || v < num_opts[which].lo || v > num_opts[which].hi) {
                snprintf(why, sizeof(why), "%s must be a number in [%g, %g], got '%.30s'", a,
                         num_opts[which].lo, num_opts[which].hi, val);
                return usage(why);
            }
            set_num(o, which, v);
        }
    }
    if (o->call && o->space) /* `call` takes no opts: the handler picks its space */
        return usage("--space does not apply to --call (the handler chooses its space)");
    if (o->call && !o->call[0])
        return usage("--call needs a handler name");
    if (o->call && o->overwrite)
        return usage("--overwrite does not apply to --call");
    return 0;
}

/* ---- the run ------------------------------------------------------------------- */

typedef struct slot {
    uint32_t msgid;
    uint64_t t0; /* send time, ns; 0: slot free */
} slot_t;

typedef struct conn {
    moor_client_t *c; /* NULL once dead */
    slot_t *slots;    /* `pipeline` of them */
    int inflight;
} conn_t;

typedef struct bench {
    bench_opts_t o;
    conn_t *conns;
    struct pollfd *pfds;
    int live;             /* connections still usable */
    hist_t hist;          /* latency, ns */
    uint64_t ops, errors; /* answered requests; error answers among them */
    uint64_t lost;        /* requests lost with a failed connection or at the end */
    uint64_t rng;
    moor_buf_t params;     /* scratch for one request's params */
    char *value;           /* value_size bytes */
    char first_error[256]; /* first error seen, reported at the end */
} bench_t;

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

static uint64_t next_rand(bench_t *b)
{
    uint64_t x = b->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    b->rng = x;
    return x * 0x2545f4914f6cdd1dull;
}

static void note_error(bench_t *b, const char *what)
{
    if (!b->first_error[0])
        snprintf(b->first_error, sizeof(b->first_error), "%s", what);
}

static void conn_fail(bench_t *b, conn_t *k, int rc)
{
    char msg[256];

    snprintf(msg, sizeof(msg), "connection failed: %s (%s)", moor_diag_msg(rc), moor_err_name(rc));
    note_error(b, msg);
    b->lost += (uint64_t)k->inflight;
    k->inflight = 0;
    moor_client_close(k->c);
    k->c = NULL;
    b->live--;
}

/* Packs one get or put (or, with --call, one call) and queues it on k. */
static int issue(bench_t *b, conn_t *k)
{
    char key[32];
    int is_get = (double)(next_rand(b) >> 11) / 9007199254740992.0 < b->o.ratio;
    int klen = snprintf(key, sizeof(key), "key:%" PRIu64, next_rand(b) % b->o.keys);
    msgpack_packer pk;
    long id;
    int s;

    moor_buf_reset(&b->params);
    moor_mp_packer_init(&pk, &b->params);
    if (b->o.call) {
        msgpack_pack_str_with_body(&pk, b->o.call, strlen(b->o.call));
        msgpack_pack_str_with_body(&pk, key, (size_t)klen);
        id = moor_client_send(k->c, "call", b->params.data, b->params.len, 2);
    } else {
        msgpack_pack_str_with_body(&pk, key, (size_t)klen);
        if (!is_get)
            msgpack_pack_bin_with_body(&pk, b->value, b->o.value_size);
        msgpack_pack_map(&pk, (b->o.space != NULL) + (!is_get && b->o.overwrite));
        if (b->o.space) {
            msgpack_pack_str_with_body(&pk, "space", 5);
            msgpack_pack_str_with_body(&pk, b->o.space, strlen(b->o.space));
        }
        if (!is_get && b->o.overwrite) {
            msgpack_pack_str_with_body(&pk, "overwrite", 9);
            msgpack_pack_true(&pk);
        }
        id = moor_client_send(k->c, is_get ? "get" : "put", b->params.data, b->params.len,
                              is_get ? 2 : 3);
    }
    if (id < 0)
        return (int)id;
    for (s = 0; k->slots[s].t0; s++)
        ; /* a free slot exists: inflight < pipeline */
    k->slots[s].msgid = (uint32_t)id;
    k->slots[s].t0 = moor_clock_mono_ns();
    k->inflight++;
    return 0;
}

static void answered(bench_t *b, conn_t *k, const moor_client_reply_t *r, uint64_t now)
{
    for (int s = 0; s < b->o.pipeline; s++) {
        if (k->slots[s].t0 && k->slots[s].msgid == r->msgid) {
            hist_add(&b->hist, now - k->slots[s].t0);
            k->slots[s].t0 = 0;
            k->inflight--;
            b->ops++;
            if (r->error_code) {
                char msg[256];
                b->errors++;
                snprintf(msg, sizeof(msg), "%s: %s", r->error_code, r->error_msg);
                note_error(b, msg);
            }
            return;
        }
    }
    note_error(b, "answer with an unknown msgid");
}

/* Reads what k's socket has and takes every whole answer. */
static void drain_conn(bench_t *b, conn_t *k)
{
    moor_client_reply_t r;
    uint64_t now;
    int rc = moor_client_io_nowait(k->c);

    if (rc) {
        conn_fail(b, k, rc);
        return;
    }
    now = moor_clock_mono_ns();
    while ((rc = moor_client_recv_nowait(k->c, &r)) == 1)
        answered(b, k, &r, now);
    if (rc < 0)
        conn_fail(b, k, rc);
}

/* Tops every pipeline up, writes, and takes the answers the same I/O
 * read: bytes already in the client's buffer will not wake poll() again. */
static void fill_pipelines(bench_t *b)
{
    for (int i = 0; i < b->o.conns; i++) {
        conn_t *k = &b->conns[i];
        int rc = 0;
        while (k->c && k->inflight < b->o.pipeline && (rc = issue(b, k)) == 0)
            ;
        if (k->c && rc)
            conn_fail(b, k, rc);
        else if (k->c)
            drain_conn(b, k);
    }
}

static uint64_t inflight_total(const bench_t *b)
{
    uint64_t n = 0;

    for (int i = 0; i < b->o.conns; i++)
        n += (uint64_t)b->conns[i].inflight;
    return n;
}

/* One poll() over the live connections, then their answers. */
static void poll_once(bench_t *b, int wait_ms)
{
    int n = 0, rc;

    for (int i = 0; i < b->o.conns; i++) {
        conn_t *k = &b->conns[i];
        b->pfds[i].fd = k->c ? moor_client_fd(k->c) : -1;
        b->pfds[i].events = (short)(POLLIN | (k->c && moor_client_unsent(k->c) ? POLLOUT : 0));
        b->pfds[i].revents = 0;
        n += k->c != NULL;
    }
    if (n == 0)
        return;
    rc = poll(b->pfds, (nfds_t)b->o.conns, wait_ms);
    if (rc <= 0)
        return;
    for (int i = 0; i < b->o.conns; i++)
        if (b->conns[i].c && b->pfds[i].revents)
            drain_conn(b, &b->conns[i]);
}

static void progress(const bench_t *b, double secs, uint64_t window_ops, double window_s)
{
    static const char fmt[] =
        "moor bench: %5.0fs  ops %10" PRIu64 "  ops/s %9.0f  errors %" PRIu64 "  p99 %.1fus";
    int tty = isatty(2);

    fprintf(stderr, fmt, secs, b->ops, window_s > 0 ? (double)window_ops / window_s : 0.0,
            b->errors + b->lost, hist_quantile(&b->hist, 0.99) / 1000.0);
    fputs(tty ? "   \r" : "\n", stderr);
    fflush(stderr);
}

static void run(bench_t *b, int timeout_ms, double *elapsed)
{
    uint64_t start = moor_clock_mono_ns(), now = start;
    uint64_t stop_send = start + (uint64_t)(b->o.duration * 1e9), drain_until = 0;
    uint64_t next_report = start + 1000000000ull, last_ops = 0, last_report = start;

    while (b->live > 0) {
        now = moor_clock_mono_ns();
        if (now < stop_send && !interrupted) {
            fill_pipelines(b);
        } else {
            if (!drain_until)
                drain_until = now + (uint64_t)timeout_ms * 1000000ull;
            if (inflight_total(b) == 0 || now >= drain_until)
                break;
        }
        poll_once(b, 50);
        now = moor_clock_mono_ns();
        if (now >= next_report) {
            progress(b, (double)(now - start) / 1e9, b->ops - last_ops,
                     (double)(now - last_report) / 1e9);
            last_ops = b->ops;
            last_report = now;
            next_report += 1000000000ull;
        }
    }
    b->lost += inflight_total(b);
    *elapsed = (double)(now - start) / 1e9;
    if (isatty(2))
        fputs("\n", stderr);
}

/* s as a JSON string on stdout: handler names are config identifiers, but
 * the name is the user's argument, so the JSON specials are escaped. */
static void print_json_str(const char *s)
{
    putchar('"');
    for (; *s; s++)
        if (*s == '"' || *s == '\\')
            printf("\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            printf("\\u%04x", (unsigned char)*s);
        else
            putchar(*s);
    putchar('"');
}

static void summary(const bench_t *b, double elapsed)
{
    double p50 = hist_quantile(&b->hist, 0.50) / 1000.0,
           p99 = hist_quantile(&b->hist, 0.99) / 1000.0;
    double p999 = hist_quantile(&b->hist, 0.999) / 1000.0, max = (double)b->hist.max / 1000.0;
    double rate = elapsed > 0 ? (double)b->ops / elapsed : 0;

    if (b->o.json)
        ; /* the JSON line alone */
    else if (b->o.call)
        printf("moor bench: %d conns x pipeline %d, %" PRIu64 " keys, calls of handler '%s', "
               "%.2f s\n",
               b->o.conns, b->o.pipeline, b->o.keys, b->o.call, elapsed);
    else
        printf("moor bench: %d conns x pipeline %d, %" PRIu64 " keys, %zu-byte values, "
               "%.0f%% gets, %.2f s\n",
               b->o.conns, b->o.pipeline, b->o.keys, b->o.value_size, b->o.ratio * 100, elapsed);
    if (!b->o.json) {
        printf("  ops      %" PRIu64 " (%.0f ops/s)\n", b->ops, rate);
        printf("  errors   %" PRIu64 " error answers, %" PRIu64 " requests lost\n", b->errors,
               b->lost);
        printf("  latency  p50 %.1f us  p99 %.1f us  p99.9 %.1f us  max %.1f us\n", p50, p99,
               p999, max);
        if (b->first_error[0])
            printf("  first error: %s\n", b->first_error);
    }
    putchar('{');
    if (b->o.call) {
        fputs("\"call\":", stdout);
        print_json_str(b->o.call);
        putchar(',');
    }
    printf("\"conns\":%d,\"pipeline\":%d,\"keys\":%" PRIu64 ",\"value_size\":%zu,\"ratio\":%g,"
           "\"duration_s\":%.3f,\"ops\":%" PRIu64 ",\"ops_per_sec\":%.1f,\"errors\":%" PRIu64
           ",\"lost\":%" PRIu64 ",\"p50_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,"
           "\"max_us\":%.1f}\n",
           b->o.conns, b->o.pipeline, b->o.keys, b->o.value_size, b->o.ratio, elapsed, b->ops, rate,
           b->errors, b->lost, p50, p99, p999, max);
    fflush(stdout);
}

/* Opens and (with a token) authenticates every connection. */
static int connect_all(bench_t *b, const char *addr, const char *token, int timeout_ms)
{
    for (int i = 0; i < b->o.conns; i++) {
        conn_t *k = &b->conns[i];
        moor_client_reply_t r;
        msgpack_packer pk;
        int rc = moor_client_connect(addr, timeout_ms, &k->c);

        if (rc == 0 && token) {
            moor_buf_reset(&b->params);
            moor_mp_packer_init(&pk, &b->params);
            msgpack_pack_str_with_body(&pk, token, strlen(token));
            rc = moor_client_call(k->c, "auth", b->params.data, b->params.len, 1, &r);
            if (rc == 0 && r.error_code) {
                fprintf(stderr, "moor bench: auth: %s: %s\n", r.error_code, r.error_msg);
                return -1;
            }
        }
        if (rc) {
            fprintf(stderr, "moor bench: connection %d to %s: %s (%s)\n", i + 1, addr,
                    moor_diag_msg(rc), moor_err_name(rc));
            return -1;
        }
        b->live++;
    }
    return 0;
}

static void bench_free(bench_t *b)
{
    for (int i = 0; b->conns && i < b->o.conns; i++) {
        moor_client_close(b->conns[i].c);
        free(b->conns[i].slots);
    }
    free(b->conns);
    free(b->pfds);
    free(b->value);
    moor_buf_free(&b->params);
    free(b);
}

static bench_t *bench_new(const bench_opts_t *o)
{
    bench_t *b = calloc(1, sizeof(*b));

    if (!b)
        return NULL;
    b->o = *o;
    b->rng = moor_clock_mono_ns() | 1;
    b->conns = calloc((size_t)o->conns, sizeof(*b->conns));
    b->pfds = calloc((size_t)o->conns, sizeof(*b->pfds));
    b->value = malloc(o->value_size ? o->value_size : 1);
    if (!b->conns || !b->pfds || !b->value)
        goto fail;
    for (size_t i = 0; i < o->value_size; i++)
        b->value[i] = (char)('a' + i % 26);
    for (int i = 0; i < o->conns; i++)
        if (!(b->conns[i].slots = calloc((size_t)o->pipeline, sizeof(slot_t))))
            goto fail;
    return b;
fail:
    bench_free(b);
    return NULL;
}

int moor_bench_main(const char *addr, const char *token, int timeout_ms, int argc, char **argv)
{
    bench_opts_t o;
    bench_t *b;
    struct sigaction sa, old;
    double elapsed = 0;
    int status;

    if ((status = parse_opts(argc, argv, &o)))
        return status < 0 ? 0 : status;
    if (!(b = bench_new(&o))) {
        fprintf(stderr, "moor bench: out of memory\n");
        return 1;
    }
    if (connect_all(b, addr, token, timeout_ms)) {
        bench_free(b);
        return 1;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_sigint;
    sigaction(SIGINT, &sa, &old);
    run(b, timeout_ms, &elapsed);
    sigaction(SIGINT, &old, NULL);
    summary(b, elapsed);
    status = b->ops == 0 || b->live == 0 || b->errors == b->ops ? 1 : 0;
    bench_free(b);
    return status;
}
