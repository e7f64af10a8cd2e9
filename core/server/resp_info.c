/*
 * resp_info.c -- INFO's text from the node's info map (resp_info.h).
 *
 * The node's `info` answer is walked with the bounded MessagePack
 * readers: top-level scalars make the # Moor section, each top-level map
 * a # Moor_<name> section with nested maps flattened into name_key lines
 * and lists shown by their length; the Redis-style sections take the
 * figures clients look for (version, uptime, clients, commands) from the
 * same map and from the RESP server's counters.
 */
#include "server/resp_info.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "util/mp.h"

typedef struct info_out {
    moor_buf_t *b;
    const char *want; /* section asked for, lower case; "" = all */
} info_out_t;

static int want_section(const info_out_t *io, const char *name)
{
    if (!*io->want || strcmp(io->want, "all") == 0 || strcmp(io->want, "everything") == 0 ||
        strcmp(io->want, "default") == 0)
        return 1;
    if (strcmp(io->want, "moor") == 0)
        return strncmp(name, "moor_", 5) == 0;
    return strcasecmp(io->want, name) == 0;
}

static void info_line(moor_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void info_line(moor_buf_t *b, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n > 0)
        moor_buf_append(b, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
    moor_buf_append(b, "\r\n", 2);
}

/* One scalar as text; containers as their element count.  0 or -1. */
static int info_scalar(const char **p, const char *end, char *dst, size_t cap)
{
    int t = moor_mp_peek(*p, end), b;
    uint64_t u;
    int64_t i;
    double d;
    const char *s;
    uint32_t n;

    switch (t) {
    case MOOR_MP_NIL: snprintf(dst, cap, "%s", ""); return moor_mp_read_nil(p, end);
    case MOOR_MP_BOOL:
        if (moor_mp_read_bool(p, end, &b))
            return -1;
        snprintf(dst, cap, "%d", b);
        return 0;
    case MOOR_MP_UINT:
        if (moor_mp_read_uint(p, end, &u))
            return -1;
        snprintf(dst, cap, "%llu", (unsigned long long)u);
        return 0;
    case MOOR_MP_INT:
        if (moor_mp_read_int(p, end, &i))
            return -1;
        snprintf(dst, cap, "%lld", (long long)i);
        return 0;
    case MOOR_MP_FLOAT:
        if (moor_mp_read_double(p, end, &d))
            return -1;
        snprintf(dst, cap, "%.6g", d);
        return 0;
    case MOOR_MP_STR:
    case MOOR_MP_BIN:
        if (moor_mp_read_strbin(p, end, &s, &n))
            return -1;
        snprintf(dst, cap, "%.*s", (int)(n < 200 ? n : 200), s);
        for (char *q = dst; *q; q++)
            if (*q == '\r' || *q == '\n' || *q == ':')
                *q = ' ';
        return 0;
    default: return -1;
    }
}

/* The map at *p as prefix_key:value lines, nested maps flattened with '_'. */
static int info_map(moor_buf_t *b, const char *prefix, const char **p, const char *end, int depth)
{
    uint32_t n;
    const char *k;
    uint32_t kl;
    char name[160], val[256];

    if (moor_mp_read_map(p, end, &n))
        return -1;
    for (uint32_t i = 0; i < n; i++) {
        int t;
        if (moor_mp_read_str(p, end, &k, &kl))
            return -1;
        snprintf(name, sizeof(name), "%s%s%.*s", prefix, *prefix ? "_" : "",
                 (int)(kl < 64 ? kl : 64), k);
        t = moor_mp_peek(*p, end);
        if (t == MOOR_MP_MAP && depth < 4) {
            if (info_map(b, name, p, end, depth + 1))
                return -1;
        } else if (t == MOOR_MP_ARRAY || t == MOOR_MP_MAP || t == MOOR_MP_EXT) {
            uint32_t cnt = 0;
            const char *q = *p;
            if (t == MOOR_MP_ARRAY)
                moor_mp_read_array(&q, end, &cnt);
            if (moor_mp_skip(p, end, MOOR_MP_MAX_DEPTH))
                return -1;
            if (t == MOOR_MP_ARRAY)
                info_line(b, "%s_count:%u", name, cnt);
        } else {
            if (info_scalar(p, end, val, sizeof(val)))
                return -1;
            info_line(b, "%s:%s", name, val);
        }
    }
    return 0;
}

static int info_find(const char *r, size_t rlen, const char *key, const char **at)
{
    const char *p = r, *end = r + rlen, *k;
    uint32_t n, kl;

    if (moor_mp_read_map(&p, end, &n))
        return -1;
    for (uint32_t i = 0; i < n; i++) {
        if (moor_mp_read_str(&p, end, &k, &kl))
            return -1;
        if (kl == strlen(key) && memcmp(k, key, kl) == 0) {
            *at = p;
            return 0;
        }
        if (moor_mp_skip(&p, end, MOOR_MP_MAX_DEPTH))
            return -1;
    }
    return -1;
}

static void info_redis_sections(const moor_resp_info_t *in, info_out_t *io, const char *r,
                                size_t rlen)
{
    const moor_srv_stats_t ss = in->stats;
    const char *p, *end = r + rlen;
    char node[128] = "", version[64] = "";
    uint64_t up_ms = 0;
    int cluster = info_find(r, rlen, "cluster", &p) == 0;

    if (info_find(r, rlen, "node", &p) == 0)
        info_scalar(&p, end, node, sizeof(node));
    if (info_find(r, rlen, "version", &p) == 0)
        info_scalar(&p, end, version, sizeof(version));
    if (info_find(r, rlen, "uptime_ms", &p) == 0)
        moor_mp_read_uint(&p, end, &up_ms);
    if (want_section(io, "server")) {
        info_line(io->b, "# Server");
        info_line(io->b, "redis_version:7.0.0");
        info_line(io->b, "moor_version:%s", version);
        info_line(io->b, "moor_node:%s", node);
        info_line(io->b, "redis_mode:%s", cluster ? "cluster" : "standalone");
        info_line(io->b, "process_id:%ld", (long)getpid());
        info_line(io->b, "tcp_port:%d", in->port);
        info_line(io->b, "uptime_in_seconds:%llu", (unsigned long long)(up_ms / 1000));
        info_line(io->b, "uptime_in_days:%llu", (unsigned long long)(up_ms / 86400000));
        info_line(io->b, "%s", "");
    }
    if (want_section(io, "clients")) {
        info_line(io->b, "# Clients");
        info_line(io->b, "connected_clients:%llu", (unsigned long long)ss.conns);
        info_line(io->b, "blocked_clients:0");
        info_line(io->b, "%s", "");
    }
    if (want_section(io, "stats")) {
        info_line(io->b, "# Stats");
        info_line(io->b, "total_connections_received:%llu", (unsigned long long)ss.accepted);
        info_line(io->b, "total_commands_processed:%llu", (unsigned long long)ss.requests);
        info_line(io->b, "rejected_connections:%llu", (unsigned long long)ss.refused);
        info_line(io->b, "protocol_errors:%llu", (unsigned long long)ss.bad_frames);
        info_line(io->b, "output_bytes:%llu", (unsigned long long)ss.output_bytes);
        info_line(io->b, "closed_output:%llu", (unsigned long long)ss.closed_output);
        info_line(io->b, "closed_deadline:%llu", (unsigned long long)ss.closed_deadline);
        info_line(io->b, "%s", "");
    }
    if (want_section(io, "keyspace")) {
        info_line(io->b, "# Keyspace");
        for (unsigned i = 0; i < in->ndbs; i++)
            info_line(io->b, "db%u:space=%s", i, in->dbs[i]);
        info_line(io->b, "%s", "");
    }
}

/* Every map of the node's info as a section "# Moor_<name>"; the top
 * level's scalars as "# Moor". */
static int info_moor_sections(info_out_t *io, const char *r, size_t rlen)
{
    const char *p = r, *end = r + rlen, *k, *q;
    uint32_t n, kl;
    char sec[96], val[256];

    if (want_section(io, "moor")) {
        info_line(io->b, "# Moor");
        if (moor_mp_read_map(&p, end, &n))
            return -1;
        for (uint32_t i = 0; i < n; i++) {
            if (moor_mp_read_str(&p, end, &k, &kl))
                return -1;
            q = p;
            if (moor_mp_peek(q, end) != MOOR_MP_MAP && moor_mp_peek(q, end) != MOOR_MP_ARRAY &&
                info_scalar(&q, end, val, sizeof(val)) == 0)
                info_line(io->b, "%.*s:%s", (int)(kl < 64 ? kl : 64), k, val);
            if (moor_mp_skip(&p, end, MOOR_MP_MAX_DEPTH))
                return -1;
        }
        info_line(io->b, "%s", "");
    }
    p = r;
    if (moor_mp_read_map(&p, end, &n))
        return -1;
    for (uint32_t i = 0; i < n; i++) {
        if (moor_mp_read_str(&p, end, &k, &kl))
            return -1;
        snprintf(sec, sizeof(sec), "moor_%.*s", (int)(kl < 64 ? kl : 64), k);
        if (moor_mp_peek(p, end) == MOOR_MP_MAP && want_section(io, sec)) {
            info_line(io->b, "# Moor_%.*s", (int)(kl < 64 ? kl : 64), k);
            if (info_map(io->b, "", &p, end, 0))
                return -1;
            info_line(io->b, "%s", "");
        } else if (moor_mp_skip(&p, end, MOOR_MP_MAX_DEPTH)) {
            return -1;
        }
    }
    return 0;
}

int moor_resp_info_text(moor_buf_t *txt, const char *want, const char *r, size_t rlen,
                        const moor_resp_info_t *in)
{
    info_out_t io = {txt, want};

    info_redis_sections(in, &io, r, rlen);
    return info_moor_sections(&io, r, rlen);
}
