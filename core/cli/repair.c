/*
 * repair.c -- `moor repair`: asks one node to repair (anti-entropy) the
 * ranges it replicates, follows the repair through `info` and prints a
 * summary.
 *
 *   moor [-h host:port] [-a token] [--timeout ms] [--pretty] repair
 *        [--space S] [--range LO:HI]... [--stop] [--restart] [--no-wait]
 *        [--json] [--timeout SECONDS]
 *
 * Sends `repair` with one map {space, ranges = [[lo, hi], ...], stop,
 * restart} (only the entries given).  --stop and --no-wait print the
 * answer (info.repair) in a line, or as JSON with --json, and return.
 * Otherwise info is polled every 0.5 s: while the repair runs, a progress
 * line (moor_repair_progress_line) goes to stderr -- redrawn in place
 * when stderr is a terminal, else one line every 2 s -- and when info
 * says it is no longer running the summary (moor_repair_summary) goes to
 * stdout, or with --json the final info.repair as JSON.  A repair still
 * running after --timeout (seconds, given after `repair`; default 3600) is
 * left to the node and the command fails; so does a repair that stopped
 * before its end (someone ran --stop) or one in which exchanges failed.
 *
 * The counters keys_*, bytes_* of info.repair start from zero at each
 * repair (a resumed one keeps counting); exchange_failures counts for the
 * node's life, so the failures of this repair are the difference from the
 * value the `repair` answer carried.  The rate and the ETA come from a
 * window of the last few seconds' samples (moor_repair_rate_*).
 *
 * Threads: the calling thread only.
 */
#include "cli/repair.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <msgpack.h>

#include "cli/json.h"
#include "net/client.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/mp.h"

#define REPAIR_MAX_RANGES 64 /* as many as the node takes */
#define REPAIR_POLL_MS 500
#define REPAIR_PLAIN_EVERY_S 2.0

/* ---- pure parts --------------------------------------------------------------------- */

/* One token: decimal or 0x-hex, all of s[0, n). */
static int parse_token(const char *s, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    unsigned base = 10;
    size_t i = 0;

    if (n > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
        base = 16, i = 2;
    if (i == n)
        return MOOR_EINVAL;
    for (; i < n; i++) {
        unsigned d;
        char ch = s[i];
        if (ch >= '0' && ch <= '9')
            d = (unsigned)(ch - '0');
        else if (base == 16 && ch >= 'a' && ch <= 'f')
            d = (unsigned)(ch - 'a' + 10);
        else if (base == 16 && ch >= 'A' && ch <= 'F')
            d = (unsigned)(ch - 'A' + 10);
        else
            return MOOR_EINVAL;
        if (v > (UINT64_MAX - d) / base)
            return MOOR_EINVAL;
        v = v * base + d;
    }
    *out = v;
    return 0;
}

int moor_repair_parse_range(const char *s, uint64_t *lo, uint64_t *hi)
{
    const char *colon = s ? strchr(s, ':') : NULL;
    uint64_t a, b;

    if (!colon || strchr(colon + 1, ':'))
        return MOOR_EINVAL;
    if (parse_token(s, (size_t)(colon - s), &a) || parse_token(colon + 1, strlen(colon + 1), &b))
        return MOOR_EINVAL;
    *lo = a;
    *hi = b;
    return 0;
}

static int key_is(const char *k, uint32_t kl, const char *name)
{
    return kl == strlen(name) && memcmp(k, name, kl) == 0;
}

/* The entries of the info.repair map at *p. */
static int read_repair_map(const char **p, const char *end, moor_repair_info_t *out)
{
    static const struct {
        const char *name;
        size_t off;
    } u64s[] = {
        {"ranges_total", offsetof(moor_repair_info_t, ranges_total)},
        {"ranges_done", offsetof(moor_repair_info_t, ranges_done)},
        {"ranges_incomplete", offsetof(moor_repair_info_t, ranges_incomplete)},
        {"exchanges", offsetof(moor_repair_info_t, exchanges)},
        {"exchange_failures", offsetof(moor_repair_info_t, exchange_failures)},
        {"keys_compared", offsetof(moor_repair_info_t, keys_compared)},
        {"keys_repaired", offsetof(moor_repair_info_t, keys_repaired)},
        {"bytes_sent", offsetof(moor_repair_info_t, bytes_sent)},
        {"bytes_received", offsetof(moor_repair_info_t, bytes_received)},
        {"tombstones_reaped", offsetof(moor_repair_info_t, tombstones_reaped)},
        {"passes", offsetof(moor_repair_info_t, passes)},
        {"trees", offsetof(moor_repair_info_t, trees)},
        {"last_full_pass_ms", offsetof(moor_repair_info_t, last_full_pass_ms)},
    };
    moor_repair_info_t in;
    uint32_t n;

    memset(&in, 0, sizeof(in));
    if (moor_mp_read_map(p, end, &n))
        return MOOR_EPROTO;
    while (n--) {
        const char *k;
        uint32_t kl;
        int done = 0;
        if (moor_mp_read_str(p, end, &k, &kl))
            return MOOR_EPROTO;
        for (size_t i = 0; i < sizeof(u64s) / sizeof(u64s[0]) && !done; i++) {
            if (!key_is(k, kl, u64s[i].name))
                continue;
            if (moor_mp_read_uint(p, end, (uint64_t *)((char *)&in + u64s[i].off)))
                return MOOR_EPROTO;
            done = 1;
        }
        if (done)
            continue;
        if (key_is(k, kl, "running") || key_is(k, kl, "trees_ready")) {
            if (moor_mp_read_bool(p, end, key_is(k, kl, "running") ? &in.running : &in.trees_ready))
                return MOOR_EPROTO;
        } else if (key_is(k, kl, "last_full_pass_s")) {
            if (moor_mp_read_double(p, end, &in.last_full_pass_s))
                return MOOR_EPROTO;
        } else if (moor_mp_skip(p, end, MOOR_MP_MAX_DEPTH)) {
            return MOOR_EPROTO;
        }
    }
    *out = in;
    return 0;
}

int moor_repair_read_info(const char *res, size_t rlen, moor_repair_info_t *out)
{
    const char *p = res, *end = res + rlen, *k;
    uint32_t n, kl;
    int has_running = 0;

    /* An info answer has "repair"; info.repair itself has "running". */
    if (moor_mp_read_map(&p, end, &n))
        return MOOR_EPROTO;
    for (uint32_t i = 0; i < n; i++) {
        if (moor_mp_read_str(&p, end, &k, &kl))
            return MOOR_EPROTO;
        if (key_is(k, kl, "repair"))
            return read_repair_map(&p, end, out);
        has_running |= key_is(k, kl, "running");
        if (moor_mp_skip(&p, end, MOOR_MP_MAX_DEPTH))
            return MOOR_EPROTO;
    }
    if (!has_running)
        return MOOR_ENOTFOUND;
    p = res;
    return read_repair_map(&p, end, out);
}

void moor_repair_rate_add(moor_repair_rate_t *r, double t, uint64_t bytes, uint64_t ranges)
{
    unsigned at;

    if (r->n == MOOR_REPAIR_SAMPLES) {
        r->head = (r->head + 1) % MOOR_REPAIR_SAMPLES;
        r->n--;
    }
    at = (r->head + r->n) % MOOR_REPAIR_SAMPLES;
    r->t[at] = t;
    r->bytes[at] = bytes;
    r->ranges[at] = ranges;
    r->n++;
    /* Keep one sample at or before the window's start, so that the window
     * spans it whole. */
    while (r->n > 2) {
        unsigned next = (r->head + 1) % MOOR_REPAIR_SAMPLES;
        if (r->t[next] > t - MOOR_REPAIR_WINDOW_S)
            break;
        r->head = next;
        r->n--;
    }
}

void moor_repair_rate_get(const moor_repair_rate_t *r, double *bytes_s, double *ranges_s)
{
    unsigned last = (r->head + r->n - 1) % MOOR_REPAIR_SAMPLES;
    double dt;

    *bytes_s = *ranges_s = 0;
    if (r->n < 2 || (dt = r->t[last] - r->t[r->head]) <= 0)
        return;
    /* Counters restart at a new repair: a drop counts as no progress. */
    if (r->bytes[last] > r->bytes[r->head])
        *bytes_s = (double)(r->bytes[last] - r->bytes[r->head]) / dt;
    if (r->ranges[last] > r->ranges[r->head])
        *ranges_s = (double)(r->ranges[last] - r->ranges[r->head]) / dt;
}

void moor_repair_fmt_count(uint64_t n, char *buf, size_t size)
{
    char digits[32], out[48];
    int len = snprintf(digits, sizeof(digits), "%" PRIu64, n), o = 0;

    for (int i = 0; i < len; i++) {
        if (i > 0 && (len - i) % 3 == 0)
            out[o++] = ',';
        out[o++] = digits[i];
    }
    out[o] = 0;
    snprintf(buf, size, "%s", out);
}

void moor_repair_fmt_bytes(double n, char *buf, size_t size)
{
    static const char *const units[] = {"KB", "MB", "GB", "TB"};
    unsigned u = 0;

    if (n < 1024) {
        snprintf(buf, size, "%.0f B", n < 0 ? 0 : n);
        return;
    }
    n /= 1024;
    while (n >= 1023.95 && u + 1 < sizeof(units) / sizeof(units[0]))
        n /= 1024, u++;
    snprintf(buf, size, "%.1f %s", n, units[u]);
}

void moor_repair_fmt_eta(double secs, char *buf, size_t size)
{
    if (secs < 0)
        snprintf(buf, size, "?");
    else if (secs < 99.5)
        snprintf(buf, size, "%.0f s", secs);
    else if (secs < 5970)
        snprintf(buf, size, "%.0f min", secs / 60);
    else
        snprintf(buf, size, "%.1f h", secs / 3600);
}

static size_t clamp_len(int n, size_t size)
{
    if (n < 0)
        return 0;
    return (size_t)n < size ? (size_t)n : size ? size - 1 : 0;
}

size_t moor_repair_progress_line(const moor_repair_info_t *in, double bytes_s, double ranges_s,
                                 char *buf, size_t size)
{
    char cmp[32], rep[32], bytes[32], rate[32], eta[32];
    uint64_t left = in->ranges_total > in->ranges_done ? in->ranges_total - in->ranges_done : 0;

    moor_repair_fmt_count(in->keys_compared, cmp, sizeof(cmp));
    moor_repair_fmt_count(in->keys_repaired, rep, sizeof(rep));
    moor_repair_fmt_bytes((double)(in->bytes_sent + in->bytes_received), bytes, sizeof(bytes));
    moor_repair_fmt_bytes(bytes_s, rate, sizeof(rate));
    moor_repair_fmt_eta(left == 0      ? 0
                        : ranges_s > 0 ? (double)left / ranges_s
                                       : -1,
                        eta, sizeof(eta));
    return clamp_len(snprintf(buf, size,
                              "repair: ranges %" PRIu64 "/%" PRIu64
                              "  keys compared %s  repaired %s  %s  %s/s  ETA %s",
                              in->ranges_done, in->ranges_total, cmp, rep, bytes, rate, eta),
                     size);
}

size_t moor_repair_summary(const moor_repair_info_t *in, double secs, uint64_t failed, char *buf,
                           size_t size)
{
    char ranges[64], cmp[32], rep[32], sent[32], recv[32], fail[32];
    int stopped = in->ranges_done < in->ranges_total;

    moor_repair_fmt_count(in->ranges_done, ranges, sizeof(ranges));
    if (stopped) {
        size_t l = strlen(ranges);
        ranges[l++] = '/';
        moor_repair_fmt_count(in->ranges_total, ranges + l, sizeof(ranges) - l);
    }
    moor_repair_fmt_count(in->keys_compared, cmp, sizeof(cmp));
    moor_repair_fmt_count(in->keys_repaired, rep, sizeof(rep));
    moor_repair_fmt_bytes((double)in->bytes_sent, sent, sizeof(sent));
    moor_repair_fmt_bytes((double)in->bytes_received, recv, sizeof(recv));
    moor_repair_fmt_count(failed, fail, sizeof(fail));
    return clamp_len(snprintf(buf, size,
                              "repair %s: %s range%s in %.1f s, %s keys compared, %s repaired, "
                              "%s sent, %s received, %s exchange%s failed",
                              stopped ? "stopped" : "done", ranges,
                              in->ranges_total == 1 ? "" : "s", secs, cmp, rep, sent, recv, fail,
                              failed == 1 ? "" : "s"),
                     size);
}

/* ---- options ------------------------------------------------------------------------ */

typedef struct repair_opts {
    const char *space;
    uint64_t *ranges; /* pairs */
    uint32_t nranges;
    int stop, restart, no_wait, json, pretty;
    double timeout_s;
} repair_opts_t;

static int usage(const char *why)
{
    if (why) {
        fprintf(stderr, "moor repair: %s (moor repair --help for usage)\n", why);
        return 2;
    }
    fputs("usage: moor [-h host:port] [-a token] [--timeout ms] [--pretty] repair\n"
          "         [--space S] [--range LO:HI]... [--stop] [--restart] [--no-wait] [--json]\n"
          "         [--timeout SECONDS]\n"
          "Repairs (anti-entropy) the ranges the node replicates -- of space S, or only\n"
          "the ring ranges (LO, HI] given (tokens in decimal or 0x-hex) -- with every\n"
          "other replica, showing progress on stderr and a summary on stdout (--json:\n"
          "the final info.repair).  A stopped repair resumes by range unless --restart.\n"
          "--stop stops the running repair; --no-wait starts it and returns at once.\n"
          "--timeout SECONDS after `repair` (default 3600): give up waiting (the repair\n"
          "goes on in the node); --timeout ms before `repair` bounds each call.\n"
          "Exit: 0 done, 1 error answer / failed exchanges / stopped / still running,\n"
          "2 usage, 3 connection failure.\n",
          stderr);
    return 2;
}

/* 0; -1 after --help; or the exit status of a usage error (reported). */
static int parse_opts(int argc, char **argv, repair_opts_t *o)
{
    char why[160];

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        int *flag = !strcmp(a, "--stop")      ? &o->stop
                    : !strcmp(a, "--restart") ? &o->restart
                    : !strcmp(a, "--no-wait") ? &o->no_wait
                    : !strcmp(a, "--json")    ? &o->json
                                              : NULL;
        if (!strcmp(a, "--help"))
            return usage(NULL), -1;
        if (!strcmp(a, "--pretty")) { /* as the other commands take it after their name */
            o->pretty = 1;
            continue;
        }
        if (flag) {
            *flag = 1;
            continue;
        }
        if (strcmp(a, "--space") && strcmp(a, "--range") && strcmp(a, "--timeout")) {
            snprintf(why, sizeof(why), "unknown option or argument '%.60s'", a);
            return usage(why);
        }
        if (!val) {
            snprintf(why, sizeof(why), "%s needs a value", a);
            return usage(why);
        }
        i++;
        if (!strcmp(a, "--space")) {
            o->space = val;
        } else if (!strcmp(a, "--timeout")) {
            char *end;
            errno = 0;
            o->timeout_s = strtod(val, &end);
            if (errno || end == val || *end || !(o->timeout_s > 0 && o->timeout_s <= 1e7)) {
                snprintf(why, sizeof(why), "--timeout takes seconds (0..1e7], got '%.30s'", val);
                return usage(why);
            }
        } else {
            if (o->nranges == REPAIR_MAX_RANGES)
                return usage("too many --range (at most 64)");
            if (moor_repair_parse_range(val, &o->ranges[2 * o->nranges],
                                        &o->ranges[2 * o->nranges + 1])) {
                snprintf(why, sizeof(why),
                         "--range takes LO:HI, two tokens (decimal or 0x-hex), got '%.40s'", val);
                return usage(why);
            }
            o->nranges++;
        }
    }
    if (o->stop && (o->restart || o->nranges || o->space))
        return usage("--stop takes no --space, --range or --restart");
    return 0;
}

/* ---- talking to the node ------------------------------------------------------------- */

static void pack_cstr(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str_with_body(pk, s, strlen(s));
}

static void pack_params(const repair_opts_t *o, moor_buf_t *out)
{
    msgpack_packer pk;

    moor_mp_packer_init(&pk, out);
    msgpack_pack_map(&pk,
                     (o->space != NULL) + (o->nranges != 0) + (o->stop != 0) + (o->restart != 0));
    if (o->space)
        pack_cstr(&pk, "space"), pack_cstr(&pk, o->space);
    if (o->nranges) {
        pack_cstr(&pk, "ranges");
        msgpack_pack_array(&pk, o->nranges);
        for (uint32_t i = 0; i < o->nranges; i++) {
            msgpack_pack_array(&pk, 2);
            msgpack_pack_uint64(&pk, o->ranges[2 * i]);
            msgpack_pack_uint64(&pk, o->ranges[2 * i + 1]);
        }
    }
    if (o->stop)
        pack_cstr(&pk, "stop"), msgpack_pack_true(&pk);
    if (o->restart)
        pack_cstr(&pk, "restart"), msgpack_pack_true(&pk);
}

static int transport_failure(const char *what, int rc)
{
    const char *name = moor_err_name(rc);

    if (strcmp(name, "UNKNOWN") != 0)
        fprintf(stderr, "moor repair: %s: %s (%s)\n", what, moor_diag_msg(rc), name);
    else
        fprintf(stderr, "moor repair: %s: %s\n", what, moor_diag_msg(rc));
    return 3;
}

/* The call's answer as info.repair into *in (and its bytes into raw when
 * given): 0 or an exit status (reported). */
static int call_info(moor_client_t *cl, const char *method, const moor_buf_t *params,
                     moor_repair_info_t *in, moor_buf_t *raw)
{
    moor_client_reply_t r;
    int rc = moor_client_call(cl, method, params ? params->data : NULL, params ? params->len : 0,
                              params ? 1 : 0, &r);

    if (rc)
        return transport_failure(method, rc);
    if (r.error_code) {
        fprintf(stderr, "moor repair: %s: %s\n", r.error_code, r.error_msg);
        return 1;
    }
    if ((rc = moor_repair_read_info(r.result, r.rlen, in))) {
        fprintf(stderr, "moor repair: the %s answer has no info.repair map (%s)\n", method,
                moor_err_name(rc));
        return 1;
    }
    if (raw) {
        /* the repair map alone, for --json */
        const char *p = r.result, *end = r.result + r.rlen, *k;
        uint32_t n, kl;
        moor_buf_reset(raw);
        if (moor_mp_read_map(&p, end, &n) == 0) {
            while (n--) {
                const char *v;
                if (moor_mp_read_str(&p, end, &k, &kl))
                    break;
                v = p;
                if (moor_mp_skip(&p, end, MOOR_MP_MAX_DEPTH))
                    break;
                if (key_is(k, kl, "repair")) {
                    moor_buf_append(raw, v, (size_t)(p - v));
                    return 0;
                }
            }
        }
        moor_buf_append(raw, r.result, r.rlen);
    }
    return 0;
}

static int print_json(const moor_buf_t *mp, int pretty)
{
    moor_buf_t out = MOOR_BUF_INIT;
    const char *p = mp->data;
    int rc = moor_json_from_mp(&p, mp->data + mp->len, pretty ? MOOR_JSON_PRETTY : 0, &out);

    if (rc == 0) {
        fwrite(out.data, 1, out.len, stdout);
        fputc('\n', stdout);
    } else {
        fprintf(stderr, "moor repair: cannot print the answer: %s\n", moor_diag_msg(rc));
    }
    moor_buf_free(&out);
    return rc ? 3 : 0;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* Polls info until the repair no longer runs (or the deadline); *last
 * gets the final info.repair, raw its bytes. */
static int follow(moor_client_t *cl, const repair_opts_t *o, moor_repair_info_t *last,
                  moor_buf_t *raw, double *secs)
{
    int tty = isatty(2), status, shown = 0;
    uint64_t start = moor_clock_mono_ms();
    double next_plain = REPAIR_PLAIN_EVERY_S;
    moor_repair_rate_t rate;
    char line[256];

    memset(&rate, 0, sizeof(rate));
    for (;;) {
        double t, bytes_s, ranges_s;
        sleep_ms(REPAIR_POLL_MS);
        if ((status = call_info(cl, "info", NULL, last, raw)))
            break;
        t = (double)(moor_clock_mono_ms() - start) / 1000.0;
        *secs = t;
        if (!last->running)
            break;
        moor_repair_rate_add(&rate, t, last->bytes_sent + last->bytes_received, last->ranges_done);
        moor_repair_rate_get(&rate, &bytes_s, &ranges_s);
        moor_repair_progress_line(last, bytes_s, ranges_s, line, sizeof(line));
        if (tty) {
            fprintf(stderr, "\r%s\033[K", line);
            shown = 1;
        } else if (t >= next_plain) {
            fprintf(stderr, "%s\n", line);
            next_plain = t + REPAIR_PLAIN_EVERY_S;
        }
        fflush(stderr);
        if (t >= o->timeout_s) {
            status = -1;
            break;
        }
    }
    if (shown)
        fputs("\r\033[K", stderr);
    return status;
}

static int run(moor_client_t *cl, const repair_opts_t *o, int pretty)
{
    moor_buf_t params = MOOR_BUF_INIT, raw = MOOR_BUF_INIT;
    moor_repair_info_t first, last;
    double secs = 0;
    char line[320];
    int status;

    pack_params(o, &params);
    status = call_info(cl, "repair", &params, &first, &raw);
    if (status)
        goto out;
    if (o->stop || o->no_wait) {
        if (o->json) {
            status = print_json(&raw, pretty);
        } else {
            printf("repair %s: ranges %" PRIu64 "/%" PRIu64 "\n",
                   o->stop ? (first.running ? "stopping" : "stopped")
                           : (first.running ? "running" : "not running"),
                   first.ranges_done, first.ranges_total);
        }
        goto out;
    }
    last = first;
    if (first.running && (status = follow(cl, o, &last, &raw, &secs))) {
        if (status < 0) {
            fprintf(stderr,
                    "moor repair: still running after %.0f s (ranges %" PRIu64 "/%" PRIu64
                    "); it goes on in the node (moor repair --stop stops it)\n",
                    o->timeout_s, last.ranges_done, last.ranges_total);
            status = 1;
        }
        goto out;
    }
    /* The node's own measure of the repair when it ended while we watched. */
    if (last.last_full_pass_ms && last.last_full_pass_ms != first.last_full_pass_ms)
        secs = last.last_full_pass_s;
    {
        uint64_t failed = last.exchange_failures > first.exchange_failures
                              ? last.exchange_failures - first.exchange_failures
                              : 0;
        if (o->json) {
            status = print_json(&raw, pretty);
        } else {
            moor_repair_summary(&last, secs, failed, line, sizeof(line));
            printf("%s\n", line);
        }
        if (status == 0 && last.ranges_done < last.ranges_total) {
            fprintf(stderr,
                    "moor repair: stopped at %" PRIu64 " of %" PRIu64
                    " ranges (moor repair resumes it)\n",
                    last.ranges_done, last.ranges_total);
            status = 1;
        } else if (status == 0 && last.ranges_incomplete) {
            fprintf(stderr,
                    "moor repair: %" PRIu64 " range%s could not be exchanged with every "
                    "replica (one was down or unreachable); run it again once every replica "
                    "is up\n",
                    last.ranges_incomplete, last.ranges_incomplete == 1 ? "" : "s");
            status = 1;
        } else if (status == 0 && failed) {
            fprintf(stderr,
                    "moor repair: %" PRIu64 " exchange%s failed (a replica did not "
                    "answer); run it again once every replica is up\n",
                    failed, failed == 1 ? "" : "s");
            status = 1;
        }
    }
out:
    moor_buf_free(&params);
    moor_buf_free(&raw);
    return status;
}

int moor_repair_main(const char *addr, const char *token, int timeout_ms, int pretty, int argc,
                     char **argv)
{
    repair_opts_t o;
    moor_client_t *cl = NULL;
    int status, rc;

    memset(&o, 0, sizeof(o));
    o.timeout_s = 3600;
    if (!(o.ranges = calloc(2 * REPAIR_MAX_RANGES, sizeof(uint64_t)))) {
        fprintf(stderr, "moor repair: out of memory\n");
        return 3;
    }
    if ((status = parse_opts(argc, argv, &o))) {
        free(o.ranges);
        return status < 0 ? 0 : status;
    }
    if ((rc = moor_client_connect(addr, timeout_ms, &cl))) {
        status = transport_failure("cannot connect", rc);
        goto done;
    }
    if (token) {
        moor_buf_t tok = MOOR_BUF_INIT;
        moor_client_reply_t r;
        msgpack_packer pk;
        moor_mp_packer_init(&pk, &tok);
        pack_cstr(&pk, token);
        rc = moor_client_call(cl, "auth", tok.data, tok.len, 1, &r);
        moor_buf_free(&tok);
        if (rc) {
            status = transport_failure("auth", rc);
            goto done;
        }
        if (r.error_code) {
            fprintf(stderr, "moor repair: %s: %s\n", r.error_code, r.error_msg);
            status = 1;
            goto done;
        }
    }
    status = run(cl, &o, pretty || o.pretty);
done:
    moor_client_close(cl);
    free(o.ranges);
    if (fflush(stdout) != 0 && status == 0)
        status = 3;
    return status;
}
