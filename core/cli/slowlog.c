/*
 * slowlog.c -- `moor slowlog`: the node's slow-request log (README "Slow
 * log"), through the `slowlog` method.
 *
 *   slowlog [--count N] [--json]   the newest N entries (default 10), newest
 *                                  first: a table, or the answer as JSON
 *   slowlog --len                  how many entries are kept
 *   slowlog --reset                empties the log
 */
#include "slowlog.h"

#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/admin.h"
#include "util/mp.h"

static void pack_cstr(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str_with_body(pk, s, strlen(s));
}

static void cell_u64(moor_admin_table_t *t, uint64_t v)
{
    char s[32];

    snprintf(s, sizeof(s), "%llu", (unsigned long long)v);
    moor_admin_table_cell(t, s);
}

static int print_table(const moor_client_reply_t *r)
{
    static const char *const head[] = {"id",          "time (UTC)", "duration_us", "engine_us",
                                       "replicas_us", "lua_us",     "method",      "space",
                                       "client",      "key"};
    const char *p = r->result, *end = r->result + r->rlen;
    moor_admin_table_t t;
    uint32_t n;

    if (moor_mp_read_array(&p, end, &n))
        return moor_admin_print_json(r->result, r->rlen, 0);
    if (n == 0) {
        printf("the slow log is empty\n");
        return 0;
    }
    moor_admin_table_init(&t, 10);
    for (size_t i = 0; i < 10; i++)
        moor_admin_table_cell(&t, head[i]);
    for (uint32_t i = 0; i < n; i++) {
        const char *e = p;
        char cell[400];
        uint64_t ms;
        time_t s;
        struct tm tm;
        if (moor_mp_skip(&p, end, MOOR_MP_MAX_DEPTH))
            break;
        cell_u64(&t, moor_admin_u64(e, end, "id"));
        ms = moor_admin_u64(e, end, "time_ms");
        s = (time_t)(ms / 1000);
        gmtime_r(&s, &tm);
        strftime(cell, sizeof(cell), "%H:%M:%S", &tm);
        snprintf(cell + strlen(cell), sizeof(cell) - strlen(cell), ".%03u", (unsigned)(ms % 1000));
        moor_admin_table_cell(&t, cell);
        cell_u64(&t, moor_admin_u64(e, end, "duration_us"));
        cell_u64(&t, moor_admin_u64(e, end, "engine_us"));
        cell_u64(&t, moor_admin_u64(e, end, "replicas_us"));
        cell_u64(&t, moor_admin_u64(e, end, "lua_us"));
        moor_admin_str(e, end, "method", cell, sizeof(cell));
        moor_admin_table_cell(&t, cell);
        moor_admin_str(e, end, "space", cell, sizeof(cell));
        moor_admin_table_cell(&t, cell[0] ? cell : "-");
        moor_admin_str(e, end, "client", cell, sizeof(cell));
        moor_admin_table_cell(&t, cell);
        moor_admin_str(e, end, "key", cell, sizeof(cell));
        moor_admin_table_cell(&t, cell[0] ? cell : "-");
    }
    moor_admin_table_print(&t);
    return 0;
}

int moor_slowlog_main(const char *addr, const char *token, int timeout_ms, int pretty, int argc,
                      char **argv)
{
    const char *op = "get";
    moor_buf_t params = MOOR_BUF_INIT;
    moor_client_t *cl = NULL;
    moor_client_reply_t r;
    msgpack_packer pk;
    long count = 10;
    int json = 0, rc;

    for (int i = 1; i < argc; i++) {
        char *endp;
        if (!strcmp(argv[i], "--help")) {
            fputs("usage: moor [-h host:port] [-a token] [--timeout ms] slowlog [--count N] "
                  "[--json]\n"
                  "       moor ... slowlog --len | --reset\n"
                  "The node's requests over slowlog.threshold_ms, newest first (default 10):\n"
                  "duration, time in the engine, on replicas and in Lua, method, space, client,\n"
                  "key.  --len: how many are kept; --reset: empty the log.\n",
                  stderr);
            return -1; /* help asked for: exit 0 */
        }
        if (!strcmp(argv[i], "--json")) {
            json = 1;
        } else if (!strcmp(argv[i], "--pretty")) {
            pretty = 1;
        } else if (!strcmp(argv[i], "--len") || !strcmp(argv[i], "--reset")) {
            if (strcmp(op, "get"))
                return moor_admin_usage("slowlog takes one of --len and --reset");
            op = argv[i] + 2;
        } else if (!strcmp(argv[i], "--count")) {
            if (++i >= argc)
                return moor_admin_usage("--count needs a value");
            count = strtol(argv[i], &endp, 10);
            if (*endp || count < 0 || count > 1000000)
                return moor_admin_usage("--count takes 0..1000000");
        } else {
            char why[96];
            snprintf(why, sizeof(why), "slowlog: unexpected '%.40s'", argv[i]);
            return moor_admin_usage(why);
        }
    }
    moor_mp_packer_init(&pk, &params);
    msgpack_pack_map(&pk, strcmp(op, "get") ? 1 : 2);
    pack_cstr(&pk, "op");
    pack_cstr(&pk, op);
    if (!strcmp(op, "get"))
        pack_cstr(&pk, "count"), msgpack_pack_uint32(&pk, (uint32_t)count);
    if ((rc = moor_admin_connect(addr, token, timeout_ms, &cl)) == 0 &&
        (rc = moor_admin_call(cl, "slowlog", &params, 1, &r)) == 0) {
        if (json || !strcmp(op, "len"))
            rc = moor_admin_print_json(r.result, r.rlen, pretty);
        else if (!strcmp(op, "reset"))
            printf("the slow log is empty\n");
        else
            rc = print_table(&r);
    }
    moor_client_close(cl);
    moor_buf_free(&params);
    return rc;
}
