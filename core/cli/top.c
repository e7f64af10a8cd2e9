/*
 * top.c -- `moor top`: a live table of every member's figures.
 *
 *   moor [-h host:port] top [--interval S] [--count N] [--json]
 *
 * Every refresh asks the node given by -h (or, once it is gone, any member
 * that answered before) for the ring, then each member for its registry
 * (the `metrics` method, server/metrics.h) over a connection kept open
 * between refreshes, and shows per member: status (the asked node's
 * view), requests per second and the p99 latency over the last interval
 * (from the deltas of moor_requests_total and of the
 * moor_request_duration_seconds buckets; the `metrics` and `ring` calls
 * top itself makes are left out), pending hints, the transfer state with
 * the ranges left, and bytes on disk.  The first refresh has no interval
 * yet: its req/s is unknown and its p99 covers everything since start.
 *
 * On a terminal the table is redrawn in place (ANSI clear); otherwise each
 * refresh prints a header line and the table, without escape codes.
 * --json prints one JSON object per refresh, one per line:
 *   {"time_ms", "from", "nodes": [{"node", "status", "addr", "reachable",
 *    "req_s", "p99_ms", "hints", "transfer", "transfer_ranges_left",
 *    "disk_bytes"}]}
 * with null for what an unreachable member (or the first refresh) cannot
 * tell.  --count N stops after N refreshes (default: until interrupted).
 */
#include "cli/top.h"

#include <math.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/json.h"
#include "net/client.h"
#include "util/buf.h"
#include "util/err.h"
#include "util/hist.h"
#include "util/mp.h"

#define EXIT_USAGE 2
#define EXIT_TRANSPORT 3
#define TOP_MAX_MEMBERS 256
#define TOP_MAX_BUCKETS 64
#define TOP_CALL_MS 2000 /* a member's answer at most: a dead one must not stall the view */

typedef struct member {
    char id[72], addr[128], status[16];
    moor_client_t *cl; /* kept open between refreshes; NULL when not connected */
    int seen;          /* listed by the last ring */
    /* the previous sample, for the rates */
    int have_prev;
    double prev_t;
    uint64_t prev_req;
    uint64_t prev_cum[TOP_MAX_BUCKETS];
    /* this refresh */
    int ok;
    uint64_t req;
    size_t nb; /* finite bounds */
    double bounds[TOP_MAX_BUCKETS];
    uint64_t cum[TOP_MAX_BUCKETS];
    double hints, ranges_total, ranges_done, disk_bytes;
    char xfer[24];
} member_t;

typedef struct top {
    const char *addr, *token;
    int timeout_ms;
    double interval;
    long count; /* 0: forever */
    int json, tty;
    moor_client_t *entry;
    member_t m[TOP_MAX_MEMBERS];
    size_t n;
} top_t;

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static double num(const char *v, const char *end)
{
    uint64_t u;
    int64_t i;
    double d;

    if (!v)
        return 0;
    if (moor_mp_peek(v, end) == MOOR_MP_UINT)
        return moor_mp_read_uint(&v, end, &u) ? 0 : (double)u;
    if (moor_mp_peek(v, end) == MOOR_MP_INT)
        return moor_mp_read_int(&v, end, &i) ? 0 : (double)i;
    return moor_mp_read_double(&v, end, &d) ? 0 : d;
}

static void str(const char *v, const char *end, char *out, size_t cap)
{
    const char *s;
    uint32_t n;

    out[0] = 0;
    if (v && moor_mp_read_str(&v, end, &s, &n) == 0)
        snprintf(out, cap, "%.*s", (int)(n < cap ? n : cap - 1), s);
}

static int connect_auth(top_t *t, const char *addr, int timeout_ms, moor_client_t **cl)
{
    moor_client_reply_t r;
    moor_buf_t tok = MOOR_BUF_INIT;
    msgpack_packer pk;
    int rc;

    if ((rc = moor_client_connect(addr, timeout_ms, cl)))
        return rc;
    if (!t->token)
        return 0;
    moor_mp_packer_init(&pk, &tok);
    msgpack_pack_str_with_body(&pk, t->token, strlen(t->token));
    rc = moor_client_call(*cl, "auth", tok.data, tok.len, 1, &r);
    moor_buf_free(&tok);
    if (rc == 0 && r.error_code)
        rc = moor_diag(MOOR_ENOAUTH, "auth: %s", r.error_msg);
    if (rc) {
        moor_client_close(*cl);
        *cl = NULL;
    }
    return rc;
}

static member_t *member_of(top_t *t, const char *id)
{
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->m[i].id, id) == 0)
            return &t->m[i];
    if (t->n == TOP_MAX_MEMBERS)
        return NULL;
    memset(&t->m[t->n], 0, sizeof(t->m[0]));
    snprintf(t->m[t->n].id, sizeof(t->m[0].id), "%s", id);
    return &t->m[t->n++];
}

/* The ring from cl into the member table.  0 or -1. */
static int take_ring(top_t *t, moor_client_t *cl)
{
    moor_client_reply_t r;
    const char *p, *end;
    uint32_t n;

    moor_client_set_timeout(cl, TOP_CALL_MS);
    if (moor_client_call(cl, "ring", NULL, 0, 0, &r) || r.error_code)
        return -1;
    end = r.result + r.rlen;
    if (!(p = moor_mp_map_find(r.result, end, "nodes")) || moor_mp_read_array(&p, end, &n))
        return -1;
    for (size_t i = 0; i < t->n; i++)
        t->m[i].seen = 0;
    for (uint32_t i = 0; i < n; i++) {
        char id[72];
        member_t *m;
        str(moor_mp_map_find(p, end, "id"), end, id, sizeof(id));
        if (id[0] && (m = member_of(t, id))) {
            m->seen = 1;
            str(moor_mp_map_find(p, end, "addr"), end, m->addr, sizeof(m->addr));
            str(moor_mp_map_find(p, end, "status"), end, m->status, sizeof(m->status));
        }
        if (moor_mp_skip(&p, end, MOOR_MP_MAX_DEPTH))
            return -1;
    }
    return 0;
}

/* The ring from the entry node, else from any member still answering. */
static int refresh_ring(top_t *t)
{
    if (!t->entry)
        connect_auth(t, t->addr, t->timeout_ms, &t->entry);
    if (t->entry && take_ring(t, t->entry) == 0)
        return 0;
    if (t->entry) {
        moor_client_close(t->entry);
        t->entry = NULL;
    }
    for (size_t i = 0; i < t->n; i++)
        if (t->m[i].cl && take_ring(t, t->m[i].cl) == 0)
            return 0;
    return -1;
}

/* Whether a sample's method label is one of top's own calls. */
static int own_call(const char *s, const char *end)
{
    char method[32];

    str(moor_mp_map_find(moor_mp_map_find(s, end, "labels"), end, "method"), end, method,
        sizeof(method));
    return strcmp(method, "metrics") == 0 || strcmp(method, "ring") == 0;
}

static void take_histogram(member_t *m, const char *s, const char *end)
{
    const char *b = moor_mp_map_find(s, end, "buckets");
    uint32_t nb, two;

    if (!b || moor_mp_read_array(&b, end, &nb) || nb == 0 || nb > TOP_MAX_BUCKETS)
        return;
    m->nb = nb - 1;
    for (uint32_t i = 0; i < nb; i++) {
        double le;
        if (moor_mp_read_array(&b, end, &two) || two != 2)
            return;
        le = num(b, end);
        if (moor_mp_skip(&b, end, 4))
            return;
        m->bounds[i] = le;
        m->cum[i] += (uint64_t)num(b, end);
        if (moor_mp_skip(&b, end, 4))
            return;
    }
}

/* One family of a member's registry. */
static void take_family(member_t *m, const char *f, const char *end)
{
    char name[96];
    const char *s = moor_mp_map_find(f, end, "samples");
    uint32_t n;

    str(moor_mp_map_find(f, end, "name"), end, name, sizeof(name));
    if (!s || moor_mp_read_array(&s, end, &n))
        return;
    for (uint32_t i = 0; i < n; i++) {
        double v = num(moor_mp_map_find(s, end, "value"), end);
        if (strcmp(name, "moor_requests_total") == 0 && !own_call(s, end))
            m->req += (uint64_t)v;
        else if (strcmp(name, "moor_request_duration_seconds") == 0 && !own_call(s, end))
            take_histogram(m, s, end);
        else if (strcmp(name, "moor_hints_pending") == 0)
            m->hints = v;
        else if (strcmp(name, "moor_transfer_state") == 0 && v == 1)
            str(moor_mp_map_find(moor_mp_map_find(s, end, "labels"), end, "state"), end, m->xfer,
                sizeof(m->xfer));
        else if (strcmp(name, "moor_transfer_ranges") == 0)
            m->ranges_total = v;
        else if (strcmp(name, "moor_transfer_ranges_done") == 0)
            m->ranges_done = v;
        else if (strcmp(name, "moor_engine_disk_bytes") == 0)
            m->disk_bytes = v;
        if (moor_mp_skip(&s, end, MOOR_MP_MAX_DEPTH))
            return;
    }
}

static void poll_member(top_t *t, member_t *m)
{
    moor_client_reply_t r;
    const char *f, *end;
    uint32_t n;

    m->ok = 0;
    m->req = 0;
    m->nb = 0;
    memset(m->cum, 0, sizeof(m->cum));
    m->hints = m->ranges_total = m->ranges_done = m->disk_bytes = 0;
    m->xfer[0] = 0;
    if (!m->cl && (!m->addr[0] || connect_auth(t, m->addr, TOP_CALL_MS, &m->cl)))
        return;
    moor_client_set_timeout(m->cl, TOP_CALL_MS);
    if (moor_client_call(m->cl, "metrics", NULL, 0, 0, &r) || r.error_code) {
        moor_client_close(m->cl);
        m->cl = NULL;
        return;
    }
    end = r.result + r.rlen;
    if (!(f = moor_mp_map_find(r.result, end, "families")) || moor_mp_read_array(&f, end, &n))
        return;
    for (uint32_t i = 0; i < n; i++) {
        take_family(m, f, end);
        if (moor_mp_skip(&f, end, MOOR_MP_MAX_DEPTH))
            return;
    }
    m->ok = 1;
}

/* Requests per second and p99 (ms) over the interval since the last
 * sample; *rate < 0 when there is none yet. */
static void figures(const member_t *m, double t, double *rate, double *p99)
{
    uint64_t d[TOP_MAX_BUCKETS];

    *rate = -1;
    if (m->have_prev && t > m->prev_t && m->req >= m->prev_req) {
        *rate = (double)(m->req - m->prev_req) / (t - m->prev_t);
        for (size_t i = 0; i <= m->nb; i++)
            d[i] = m->cum[i] >= m->prev_cum[i] ? m->cum[i] - m->prev_cum[i] : 0;
        *p99 = m->nb ? moor_hist_quantile(m->bounds, m->nb, d, 0.99) * 1000 : 0;
    } else {
        *p99 = m->nb ? moor_hist_quantile(m->bounds, m->nb, m->cum, 0.99) * 1000 : 0;
    }
}

static void pack_opt(msgpack_packer *pk, const char *k, int have, double v)
{
    msgpack_pack_str_with_body(pk, k, strlen(k));
    if (have)
        msgpack_pack_double(pk, v);
    else
        msgpack_pack_nil(pk);
}

/* A count: an integer in the JSON. */
static void pack_count(msgpack_packer *pk, const char *k, int have, double v)
{
    msgpack_pack_str_with_body(pk, k, strlen(k));
    if (have)
        msgpack_pack_uint64(pk, v > 0 ? (uint64_t)v : 0);
    else
        msgpack_pack_nil(pk);
}

static void pk_str(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str_with_body(pk, s, strlen(s));
}

static void print_json(top_t *t, double now)
{
    moor_buf_t mp = MOOR_BUF_INIT, out = MOOR_BUF_INIT;
    msgpack_packer pk;
    struct timespec ts;
    size_t shown = 0;
    const char *p;

    for (size_t i = 0; i < t->n; i++)
        shown += t->m[i].seen;
    clock_gettime(CLOCK_REALTIME, &ts);
    moor_mp_packer_init(&pk, &mp);
    msgpack_pack_map(&pk, 3);
    pk_str(&pk, "time_ms");
    msgpack_pack_uint64(&pk, (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000);
    pk_str(&pk, "from");
    pk_str(&pk, t->addr);
    pk_str(&pk, "nodes");
    msgpack_pack_array(&pk, (uint32_t)shown);
    for (size_t i = 0; i < t->n; i++) {
        const member_t *m = &t->m[i];
        double rate, p99;
        if (!m->seen)
            continue;
        figures(m, now, &rate, &p99);
        msgpack_pack_map(&pk, 10);
        pk_str(&pk, "node");
        pk_str(&pk, m->id);
        pk_str(&pk, "status");
        pk_str(&pk, m->status);
        pk_str(&pk, "addr");
        pk_str(&pk, m->addr);
        pk_str(&pk, "reachable");
        m->ok ? msgpack_pack_true(&pk) : msgpack_pack_false(&pk);
        pack_opt(&pk, "req_s", m->ok && rate >= 0, rate);
        pack_opt(&pk, "p99_ms", m->ok, p99);
        pack_count(&pk, "hints", m->ok, m->hints);
        pk_str(&pk, "transfer");
        if (m->ok)
            pk_str(&pk, m->xfer[0] ? m->xfer : "idle");
        else
            msgpack_pack_nil(&pk);
        pack_count(&pk, "transfer_ranges_left", m->ok, m->ranges_total - m->ranges_done);
        pack_count(&pk, "disk_bytes", m->ok, m->disk_bytes);
    }
    p = mp.data;
    if (moor_json_from_mp(&p, mp.data + mp.len, 0, &out) == 0) {
        fwrite(out.data, 1, out.len, stdout);
        fputc('\n', stdout);
    }
    moor_buf_free(&mp);
    moor_buf_free(&out);
}

static void print_table(top_t *t, double now)
{
    time_t wall = time(NULL);
    struct tm tm;
    char when[32];

    gmtime_r(&wall, &tm);
    strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", &tm);
    if (t->tty)
        fputs("\033[H\033[2J", stdout);
    printf("moor top: %s, ring from %s, every %gs\n", when, t->addr, t->interval);
    printf("%-16s %-8s %10s %9s %8s %-14s %14s\n", "NODE", "STATUS", "REQ/S", "P99_MS", "HINTS",
           "TRANSFER", "BYTES");
    for (size_t i = 0; i < t->n; i++) {
        const member_t *m = &t->m[i];
        double rate, p99;
        char xfer[40], rs[24];
        if (!m->seen)
            continue;
        if (!m->ok) {
            printf("%-16s %-8s %10s %9s %8s %-14s %14s\n", m->id, m->status, "-", "-", "-",
                   "unreachable", "-");
            continue;
        }
        figures(m, now, &rate, &p99);
        if (m->xfer[0] && strcmp(m->xfer, "idle") != 0)
            snprintf(xfer, sizeof(xfer), "%s %.0f left", m->xfer, m->ranges_total - m->ranges_done);
        else
            snprintf(xfer, sizeof(xfer), "idle");
        if (rate >= 0)
            snprintf(rs, sizeof(rs), "%.1f", rate);
        else
            snprintf(rs, sizeof(rs), "-");
        printf("%-16s %-8s %10s %9.2f %8.0f %-14s %14.0f\n", m->id, m->status, rs, p99, m->hints,
               xfer, m->disk_bytes);
    }
    if (!t->tty)
        putchar('\n');
}

static int parse(top_t *t, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        char *e;
        if (strcmp(a, "--json") == 0) {
            t->json = 1;
        } else if (strcmp(a, "--interval") == 0 && i + 1 < argc) {
            t->interval = strtod(argv[++i], &e);
            if (*e || !(t->interval >= 0.1 && t->interval <= 3600))
                return -1;
        } else if (strcmp(a, "--count") == 0 && i + 1 < argc) {
            t->count = strtol(argv[++i], &e, 10);
            if (*e || t->count < 1)
                return -1;
        } else {
            return -1;
        }
    }
    return 0;
}

int moor_top_main(const char *addr, const char *token, int timeout_ms, int argc, char **argv)
{
    top_t *t = calloc(1, sizeof(*t));
    int status = 0;

    if (!t)
        return EXIT_TRANSPORT;
    t->addr = addr;
    t->token = token;
    t->timeout_ms = timeout_ms;
    t->interval = 1;
    if (parse(t, argc, argv)) {
        fprintf(stderr, "moor: top [--interval S (0.1..3600)] [--count N] [--json] "
                        "(moor --help for usage)\n");
        free(t);
        return EXIT_USAGE;
    }
    t->tty = isatty(STDOUT_FILENO) && !t->json;
    for (long k = 0; !t->count || k < t->count; k++) {
        double start = now_s(), now, wait;
        if (refresh_ring(t)) {
            if (k == 0) {
                fprintf(stderr, "moor: top: cannot read the ring from %s\n", addr);
                status = EXIT_TRANSPORT;
                break;
            }
        }
        for (size_t i = 0; i < t->n; i++)
            if (t->m[i].seen)
                poll_member(t, &t->m[i]);
        now = now_s();
        if (t->json)
            print_json(t, now);
        else
            print_table(t, now);
        fflush(stdout);
        for (size_t i = 0; i < t->n; i++) {
            member_t *m = &t->m[i];
            m->have_prev = m->ok;
            m->prev_t = now;
            m->prev_req = m->req;
            memcpy(m->prev_cum, m->cum, sizeof(m->cum));
        }
        if (t->count && k + 1 >= t->count)
            break;
        wait = t->interval - (now_s() - start);
        if (wait > 0) {
            struct timespec ts = {(time_t)wait, (long)((wait - floor(wait)) * 1e9)};
            nanosleep(&ts, NULL);
        }
    }
    if (t->entry)
        moor_client_close(t->entry);
    for (size_t i = 0; i < t->n; i++)
        if (t->m[i].cl)
            moor_client_close(t->m[i].cl);
    free(t);
    return status;
}
