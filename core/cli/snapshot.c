/*
 * snapshot.c -- `moor snapshot`: point-in-time copies of a node's data
 * (README "Snapshots and restore"), through the `snapshot` method.
 *
 *   snapshot [--tag T] [--json]      take one; prints its name, path, size
 *   snapshot list [--json]           every snapshot of the node, oldest first
 *   snapshot delete NAME [--json]    delete one
 *
 * A table (or a line) on stdout, or the answer as JSON with --json.
 */
#include "snapshot.h"

#include <msgpack.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli/admin.h"
#include "util/mp.h"

static void pack_cstr(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str_with_body(pk, s, strlen(s));
}

static int print_created(const moor_client_reply_t *r)
{
    const char *p = r->result, *end = r->result + r->rlen;
    char name[128], path[4400], b[32], lb[32], cb[32];

    moor_admin_str(p, end, "name", name, sizeof(name));
    moor_admin_str(p, end, "path", path, sizeof(path));
    moor_admin_bytes((double)moor_admin_u64(p, end, "bytes"), b, sizeof(b));
    moor_admin_bytes((double)moor_admin_u64(p, end, "linked_bytes"), lb, sizeof(lb));
    moor_admin_bytes((double)moor_admin_u64(p, end, "copied_bytes"), cb, sizeof(cb));
    printf("snapshot %s\n  path    %s\n  size    %s (%s linked, %s copied), %llu tables\n"
           "  took    %llu ms\n",
           name, path, b, lb, cb, (unsigned long long)moor_admin_u64(p, end, "tables"),
           (unsigned long long)moor_admin_u64(p, end, "ms"));
    return 0;
}

static int print_list(const moor_client_reply_t *r)
{
    const char *p = r->result, *end = r->result + r->rlen;
    moor_admin_table_t t;
    uint32_t n;

    if (moor_mp_read_array(&p, end, &n))
        return moor_admin_print_json(r->result, r->rlen, 0);
    if (n == 0) {
        printf("no snapshots\n");
        return 0;
    }
    moor_admin_table_init(&t, 5);
    moor_admin_table_cell(&t, "name");
    moor_admin_table_cell(&t, "tag");
    moor_admin_table_cell(&t, "created (UTC)");
    moor_admin_table_cell(&t, "size");
    moor_admin_table_cell(&t, "path");
    for (uint32_t i = 0; i < n; i++) {
        const char *e = p;
        char cell[4400];
        time_t s;
        struct tm tm;
        if (moor_mp_skip(&p, end, MOOR_MP_MAX_DEPTH))
            break;
        moor_admin_str(e, end, "name", cell, sizeof(cell));
        moor_admin_table_cell(&t, cell);
        moor_admin_str(e, end, "tag", cell, sizeof(cell));
        moor_admin_table_cell(&t, cell);
        s = (time_t)(moor_admin_u64(e, end, "created_ms") / 1000);
        gmtime_r(&s, &tm);
        strftime(cell, sizeof(cell), "%Y-%m-%d %H:%M:%S", &tm);
        moor_admin_table_cell(&t, cell);
        moor_admin_bytes((double)moor_admin_u64(e, end, "bytes"), cell, sizeof(cell));
        moor_admin_table_cell(&t, cell);
        moor_admin_str(e, end, "path", cell, sizeof(cell));
        moor_admin_table_cell(&t, cell);
    }
    moor_admin_table_print(&t);
    printf("(sizes count hard-linked tables in full: they are shared with the live data "
           "and with other snapshots)\n");
    return 0;
}

int moor_snapshot_main(const char *addr, const char *token, int timeout_ms, int pretty, int argc,
                       char **argv)
{
    const char *op = "create", *tag = NULL, *name = NULL;
    moor_buf_t params = MOOR_BUF_INIT;
    moor_client_t *cl = NULL;
    moor_client_reply_t r;
    msgpack_packer pk;
    int json = 0, words = 0, rc;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help")) {
            fputs(
                "usage: moor [-h host:port] [-a token] [--timeout ms] snapshot [--tag T] [--json]\n"
                "       moor ... snapshot list [--json]\n"
                "       moor ... snapshot delete NAME [--json]\n"
                "A consistent, point-in-time copy of the node's data in\n"
                "data_dir/snapshots/NAME (tables hard-linked, the commit log copied); list\n"
                "and delete them.  README \"Snapshots and restore\" says how to restore.\n",
                stderr);
            return -1; /* help asked for: exit 0 */
        } else if (!strcmp(argv[i], "--json")) {
            json = 1;
        } else if (!strcmp(argv[i], "--pretty")) {
            pretty = 1;
        } else if (!strcmp(argv[i], "--tag")) {
            if (++i >= argc)
                return moor_admin_usage("--tag needs a value");
            tag = argv[i];
        } else if (!strncmp(argv[i], "--", 2) || words >= 2) {
            char why[96];
            snprintf(why, sizeof(why), "snapshot: unexpected '%.40s'", argv[i]);
            return moor_admin_usage(why);
        } else if (words++ == 0) {
            op = argv[i];
        } else {
            name = argv[i];
        }
    }
    if (words && strcmp(op, "list") && strcmp(op, "delete"))
        return moor_admin_usage("snapshot takes no word, list, or delete NAME");
    if (!strcmp(op, "delete") != (name != NULL))
        return moor_admin_usage(name ? "snapshot list takes no name"
                                     : "snapshot delete takes NAME");
    if (tag && words)
        return moor_admin_usage("--tag is for taking a snapshot");
    /* A large node's snapshot copies its whole commit log: unless told
     * otherwise (timeout_ms 0: no --timeout), wait longer than for one
     * request. */
    if (!timeout_ms)
        timeout_ms = words ? MOOR_CLIENT_TIMEOUT_MS : 600000;
    moor_mp_packer_init(&pk, &params);
    msgpack_pack_map(&pk, 1 + (tag != NULL) + (name != NULL));
    pack_cstr(&pk, "op");
    pack_cstr(&pk, op);
    if (tag)
        pack_cstr(&pk, "tag"), pack_cstr(&pk, tag);
    if (name)
        pack_cstr(&pk, "name"), pack_cstr(&pk, name);
    if ((rc = moor_admin_connect(addr, token, timeout_ms, &cl)) == 0 &&
        (rc = moor_admin_call(cl, "snapshot", &params, 1, &r)) == 0) {
        if (json)
            rc = moor_admin_print_json(r.result, r.rlen, pretty);
        else if (!strcmp(op, "create"))
            rc = print_created(&r);
        else if (!strcmp(op, "list"))
            rc = print_list(&r);
        else
            printf("deleted %s\n", name);
    }
    moor_client_close(cl);
    moor_buf_free(&params);
    return rc;
}
