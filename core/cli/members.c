/*
 * members.c -- `moor leave`, `moor remove ID` and `moor transfers`: the
 * membership changes of README "Joining and leaving" and their progress.
 *
 *   leave [--cancel] [--wait] [--json]   this node hands its ranges off;
 *                                        --wait follows it until `left`
 *   remove ID                            takes a dead member out for good
 *   transfers [--rate-mb-s X] [--concurrency N] [--json] [--watch SECONDS]
 *                                        every range in motion in the
 *                                        cluster (throttles set first)
 *
 * A table on stdout (or the answer as JSON), progress lines on stderr.
 */
#include "members.h"

#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/admin.h"
#include "cli/json.h"
#include "net/client.h"
#include "util/buf.h"
#include "util/err.h"
#include "util/mp.h"

#define EXIT_ERROR_REPLY 1
#define EXIT_USAGE 2
#define EXIT_TRANSPORT 3

static int fail_usage(const char *why)
{
    fprintf(stderr, "moor: %s (moor --help for usage)\n", why);
    return EXIT_USAGE;
}

/* moor leave|remove|transfers --help (stderr, exit 0 as for the others). */
static int help(void)
{
    fputs("usage: moor [-h host:port] [-a token] [--timeout ms] [--pretty]\n"
          "  leave [--cancel] [--wait] [--json]   this node hands its ranges off; --wait\n"
          "        follows it (progress on stderr) until `left`\n"
          "  remove ID [--json]                   take a member that is down out for good\n"
          "  transfers [--rate-mb-s X] [--concurrency N] [--watch SECONDS] [--json]\n"
          "        every range in motion in the cluster as a table (per-node progress on\n"
          "        stderr); --watch repeats it; the throttles are set on every member first\n"
          "--json: the answer as one JSON value on stdout.\n"
          "Exit: 0 ok, 1 error answer, 2 usage, 3 connection failure.\n",
          stderr);
    return 0;
}

static int pretty; /* the global --pretty */

static double num_field(const char *p, const char *end, const char *name, double dflt)
{
    const char *v = moor_mp_map_find(p, end, name);
    uint64_t u;
    double d;

    if (!v)
        return dflt;
    if (moor_mp_read_uint(&v, end, &u) == 0)
        return (double)u;
    if (moor_mp_read_double(&v, end, &d) == 0)
        return d;
    return dflt;
}

static uint64_t u64_field(const char *p, const char *end, const char *name)
{
    const char *v = moor_mp_map_find(p, end, name);
    uint64_t u;

    return v && moor_mp_read_uint(&v, end, &u) == 0 ? u : 0;
}

static void str_field(const char *p, const char *end, const char *name, char *out, size_t osz)
{
    const char *v = moor_mp_map_find(p, end, name), *s;
    uint32_t n;

    out[0] = '\0';
    if (v && moor_mp_read_strbin(&v, end, &s, &n) == 0)
        snprintf(out, osz, "%.*s", (int)n, s);
}

static void human(double b, char *out, size_t osz)
{
    const char *u[] = {"B", "KB", "MB", "GB", "TB"};
    int i = 0;

    while (b >= 1024 && i < 4)
        b /= 1024, i++;
    snprintf(out, osz, i ? "%.1f %s" : "%.0f %s", b, u[i]);
}

/* ---- leave --------------------------------------------------------------------------- */

static int run_leave(moor_client_t *cl, int cancel, int wait, int json)
{
    double shown = -1; /* ranges done in the last line printed */
    int tty;
    moor_buf_t params = MOOR_BUF_INIT;
    moor_client_reply_t r;
    msgpack_packer pk;
    int rc;
    char state[32];

    moor_mp_packer_init(&pk, &params);
    msgpack_pack_map(&pk, 1);
    msgpack_pack_str_with_body(&pk, "cancel", 6);
    cancel ? msgpack_pack_true(&pk) : msgpack_pack_false(&pk);
    rc = moor_admin_call(cl, "leave", &params, 1, &r);
    moor_buf_free(&params);
    if (rc)
        return rc;
    str_field(r.result, r.result + r.rlen, "state", state, sizeof(state));
    if (!wait)
        return json ? moor_admin_print_json(r.result, r.rlen, pretty) : (printf("%s\n", state), 0);
    tty = isatty(2);
    for (;;) {
        const char *tr;
        double done, total;
        if ((rc = moor_admin_call(cl, "info", NULL, 0, &r)))
            return rc;
        tr = moor_mp_map_find(r.result, r.result + r.rlen, "transfer");
        if (!tr)
            return fail_usage("the node's info has no transfer section");
        str_field(tr, r.result + r.rlen, "state", state, sizeof(state));
        done = num_field(tr, r.result + r.rlen, "ranges_done", 0);
        total = num_field(tr, r.result + r.rlen, "ranges_total", 0);
        /* Redrawn in place on a terminal; elsewhere (a log) a line per change. */
        if (tty)
            fprintf(stderr, "\r%s: %.0f of %.0f ranges handed off   ", state, done, total);
        else if (done != shown)
            fprintf(stderr, "%s: %.0f of %.0f ranges handed off\n", state, done, total);
        shown = done;
        if (strcmp(state, "leaving") != 0) {
            if (tty)
                fputc('\n', stderr);
            if (json) {
                const char *p = tr;
                moor_mp_skip(&p, r.result + r.rlen, 64);
                return moor_admin_print_json(tr, (size_t)(p - tr), pretty);
            }
            printf("%s\n", state);
            return strcmp(state, "left") == 0 || cancel ? 0 : EXIT_ERROR_REPLY;
        }
        {
            struct timespec ts = {0, 500 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
}

/* ---- transfers ----------------------------------------------------------------------- */

/* The table of every range in motion (and one line per node). */
static int print_transfers(const char *res, size_t rlen)
{
    const char *end = res + rlen, *nodes = moor_mp_map_find(res, end, "nodes"),
               *errs = moor_mp_map_find(res, end, "errors");
    uint32_t nn = 0, ne = 0, moving = 0;

    if (!nodes || moor_mp_read_array(&nodes, end, &nn))
        return fail_usage("malformed transfers answer");
    printf("%-12s %-12s %-8s %-33s %17s %21s %11s %8s %s\n", "FROM", "TO", "SPACES",
           "RANGE (lo, hi]", "KEYS", "BYTES", "RATE", "ETA", "LIVE");
    for (uint32_t i = 0; i < nn; i++) {
        const char *node = nodes, *ranges = moor_mp_map_find(node, end, "ranges"),
                   *info = moor_mp_map_find(node, end, "info");
        char id[80], state[32];
        uint32_t nr = 0;
        str_field(node, end, "node", id, sizeof(id));
        str_field(node, end, "state", state, sizeof(state));
        if (info && strcmp(state, "idle") != 0)
            fprintf(stderr, "%s: %s, %.0f of %.0f ranges, %.0f of %.0f tokens on the ring\n", id,
                    state, num_field(info, end, "ranges_done", 0),
                    num_field(info, end, "ranges_total", 0),
                    num_field(info, end, "vnodes", 0) - num_field(info, end, "inactive", 0),
                    num_field(info, end, "vnodes", 0));
        if (ranges && moor_mp_read_array(&ranges, end, &nr) == 0) {
            for (uint32_t k = 0; k < nr; k++) {
                const char *rg = ranges, *sp = moor_mp_map_find(rg, end, "spaces");
                char from[80], to[80], spaces[64] = "", keys[40], bytes[48], a[24], b[24], rate[24],
                                       eta[24];
                uint32_t ns;
                double kt = num_field(rg, end, "keys_total", -1),
                       bt = num_field(rg, end, "bytes_total", -1),
                       e = num_field(rg, end, "eta_s", -1);
                const char *lv = moor_mp_map_find(rg, end, "live");
                int live = 0;
                str_field(rg, end, "from", from, sizeof(from));
                str_field(rg, end, "to", to, sizeof(to));
                if (sp && moor_mp_read_array(&sp, end, &ns) == 0)
                    for (uint32_t q = 0; q < ns; q++) {
                        const char *s;
                        uint32_t sl;
                        if (moor_mp_read_str(&sp, end, &s, &sl))
                            break;
                        snprintf(spaces + strlen(spaces), sizeof(spaces) - strlen(spaces), "%s%.*s",
                                 q ? "," : "", (int)sl, s);
                    }
                if (kt >= 0)
                    snprintf(keys, sizeof(keys), "%.0f/%.0f", num_field(rg, end, "keys_done", 0),
                             kt);
                else
                    snprintf(keys, sizeof(keys), "%.0f/?", num_field(rg, end, "keys_done", 0));
                human(num_field(rg, end, "bytes_done", 0), a, sizeof(a));
                if (bt >= 0) {
                    human(bt, b, sizeof(b));
                    snprintf(bytes, sizeof(bytes), "%s/%s", a, b);
                } else {
                    snprintf(bytes, sizeof(bytes), "%s/?", a);
                }
                {
                    char r0[24];
                    human(num_field(rg, end, "rate_bytes_s", 0), r0, sizeof(r0));
                    snprintf(rate, sizeof(rate), "%.20s/s", r0);
                }
                if (e >= 0)
                    snprintf(eta, sizeof(eta), e < 10 ? "%.1fs" : "%.0fs", e);
                else
                    snprintf(eta, sizeof(eta), "-");
                if (lv)
                    moor_mp_read_bool(&lv, end, &live);
                printf("%-12s %-12s %-8s (%016llx,%016llx] %17s %21s %11s %8s %s\n", from, to,
                       spaces, (unsigned long long)u64_field(rg, end, "lo"),
                       (unsigned long long)u64_field(rg, end, "hi"), keys, bytes, rate, eta,
                       live ? "yes" : "no");
                moving++;
                if (moor_mp_skip(&ranges, end, 64))
                    break;
            }
        }
        if (moor_mp_skip(&nodes, end, 64))
            break;
    }
    if (moving == 0)
        printf("(no range in motion)\n");
    if (errs && moor_mp_read_array(&errs, end, &ne) == 0)
        for (uint32_t i = 0; i < ne; i++) {
            char id[80], err[64];
            str_field(errs, end, "node", id, sizeof(id));
            str_field(errs, end, "error", err, sizeof(err));
            fprintf(stderr, "moor: %s did not answer (%s)\n", id, err);
            if (moor_mp_skip(&errs, end, 64))
                break;
        }
    return 0;
}

static int run_transfers(moor_client_t *cl, double rate, int conc, int json, double watch)
{
    moor_buf_t params = MOOR_BUF_INIT;
    moor_client_reply_t r;
    msgpack_packer pk;
    int rc;

    for (;;) {
        params.len = 0;
        moor_mp_packer_init(&pk, &params);
        msgpack_pack_map(&pk, (rate > 0) + (conc > 0));
        if (rate > 0) {
            msgpack_pack_str_with_body(&pk, "rate_mb_s", 9);
            msgpack_pack_double(&pk, rate);
        }
        if (conc > 0) {
            msgpack_pack_str_with_body(&pk, "concurrency", 11);
            msgpack_pack_uint32(&pk, (uint32_t)conc);
        }
        rate = 0; /* set once */
        conc = 0;
        if ((rc = moor_admin_call(cl, "transfers", &params, 1, &r)))
            break;
        rc = json ? moor_admin_print_json(r.result, r.rlen, pretty)
                  : print_transfers(r.result, r.rlen);
        fflush(stdout);
        if (rc || watch <= 0)
            break;
        {
            struct timespec ts = {(time_t)watch, (long)((watch - (double)(time_t)watch) * 1e9)};
            nanosleep(&ts, NULL);
        }
    }
    moor_buf_free(&params);
    return rc;
}

int moor_members_main(const char *addr, const char *token, int timeout_ms, int want_pretty,
                      int argc, char **argv)
{
    const char *cmd = argv[0], *id = NULL;
    int cancel = 0, wait = 0, json = 0, conc = 0, rc;
    double rate = 0, watch = 0;
    moor_client_t *cl = NULL;

    pretty = want_pretty;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help"))
            return help();
        if (!strcmp(a, "--json"))
            json = 1;
        else if (!strcmp(cmd, "leave") && !strcmp(a, "--cancel"))
            cancel = 1;
        else if (!strcmp(cmd, "leave") && !strcmp(a, "--wait"))
            wait = 1;
        else if (!strcmp(cmd, "transfers") && !strcmp(a, "--rate-mb-s") && v) {
            rate = strtod(v, NULL);
            i++;
            if (!(rate >= 0.01 && rate <= 100000))
                return fail_usage("--rate-mb-s takes a number in 0.01..100000");
        } else if (!strcmp(cmd, "transfers") && !strcmp(a, "--concurrency") && v) {
            conc = atoi(v);
            i++;
            if (conc < 1 || conc > 64)
                return fail_usage("--concurrency takes 1..64");
        } else if (!strcmp(cmd, "transfers") && !strcmp(a, "--watch") && v) {
            watch = strtod(v, NULL);
            i++;
            if (!(watch >= 0.1 && watch <= 3600))
                return fail_usage("--watch takes seconds (0.1..3600)");
        } else if (!strcmp(cmd, "remove") && !id && a[0] != '-') {
            id = a;
        } else {
            char why[96];
            snprintf(why, sizeof(why), "%s: unexpected argument '%.40s'", cmd, a);
            return fail_usage(why);
        }
    }
    if (!strcmp(cmd, "remove") && !id)
        return fail_usage("remove takes the id of a member that is down");
    if ((rc = moor_admin_connect(addr, token, timeout_ms, &cl)) == 0) {
        if (!strcmp(cmd, "leave")) {
            rc = run_leave(cl, cancel, wait, json);
        } else if (!strcmp(cmd, "remove")) {
            moor_buf_t params = MOOR_BUF_INIT;
            moor_client_reply_t r;
            msgpack_packer pk;
            moor_mp_packer_init(&pk, &params);
            msgpack_pack_str_with_body(&pk, id, strlen(id));
            rc = moor_admin_call(cl, "remove", &params, 1, &r);
            moor_buf_free(&params);
            if (rc == 0 && json)
                printf("true\n");
            else if (rc == 0)
                printf("removed %s: every node repairs the ranges it held\n", id);
        } else {
            rc = run_transfers(cl, rate, conc, json, watch);
        }
    }
    moor_client_close(cl);
    return rc;
}
