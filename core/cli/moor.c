/*
 * moor.c -- the `moor` command-line client: one command per run against
 * one node, values given and shown as JSON (json.h has the mapping).
 *
 *   moor [-h host:port] [-a token] [--timeout ms] [--pretty] CMD ...
 *     get KEY [--space S] [--r N|one|quorum|all] [--raw] [--receipt]
 *     put KEY VALUE [--space S] [--ctx CTX] [--w N|one|quorum|all] [--raw] [--receipt]
 *         [--ttl MS]
 *     del KEY [--space S] [--ctx CTX] [--w N|one|quorum|all] [--receipt]
 *     call HANDLER [ARG-JSON...]
 *     ring [--json]
 *     where KEY [--space S]
 *     ping | info
 *     bench [options]            (bench.c)
 *     repair [options]           (repair.c)
 *     help                       (as --help)
 *
 * Output goes to stdout as one JSON value, except `ring`, which prints a
 * table (show.h) unless --json.  A ctx (get and put results) is shown as
 * a plain base64 string, the form --ctx takes back.  get prints null for
 * a missing key and {"values": [v], "ctx": CTX} for one value; for several
 * (siblings) {"siblings": [v1, v2, ...], "clock": {"n1": 3, ...}, "ctx": CTX},
 * the clock decoded from the ctx (one clock per record, shared by all its
 * siblings).  With --raw get prints each value on its own line, str and
 * bin values as their bare bytes.  put --raw sends VALUE as a string
 * instead of parsing it as JSON.  --receipt sends opts.receipt = true: the
 * answer then carries `receipt`, one entry per replica asked.  where
 * prints {"replicas": [ids], "fallbacks": [ids]}.
 *
 * --r and --w take a replica count or one/quorum/all (sent as opts r/w:
 * an integer or that string).  --timeout bounds the whole command (connect
 * and call); get, put and del also send it as opts.timeout_ms, less a
 * fifth, so that the node's own TIMEOUT or QUORUM_FAILED answer arrives
 * before the client gives up.
 *
 * Exit status: 0 success, 1 the node answered with an error (code and
 * message on stderr), 2 usage or bad input (bad JSON names the byte),
 * 3 transport failure (cannot connect, timeout, connection lost).
 *
 * Options may come before or after the command's words; "--" ends them
 * (for a key that starts with "--").  -a may also come from $MOOR_TOKEN.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <msgpack.h>

#include "cli/bench.h"
#include "cli/json.h"
#include "cli/members.h"
#include "cli/repair.h"
#include "cli/show.h"
#include "net/client.h"
#include "util/mp.h"
#include "util/err.h"

enum { EXIT_ERROR_REPLY = 1, EXIT_USAGE = 2, EXIT_TRANSPORT = 3 };

/* Which command options a command accepts. */
enum {
    OPT_SPACE = 1,
    OPT_R = 2,
    OPT_W = 4,
    OPT_CTX = 8,
    OPT_RAW = 16,
    OPT_JSON = 32,
    OPT_RECEIPT = 64,
    OPT_TTL = 128
};

typedef struct cmd_def {
    const char *name;
    int min_args, max_args; /* positional words after the command */
    int opts;               /* OPT_* accepted */
} cmd_def_t;

static const cmd_def_t commands[] = {
    {"get", 1, 1, OPT_SPACE | OPT_R | OPT_RAW | OPT_RECEIPT},
    {"put", 2, 2, OPT_SPACE | OPT_W | OPT_CTX | OPT_RAW | OPT_RECEIPT | OPT_TTL},
    {"del", 1, 1, OPT_SPACE | OPT_W | OPT_CTX | OPT_RECEIPT},
    {"where", 1, 1, OPT_SPACE},
    {"call", 1, 1 << 20, 0},
    {"ping", 0, 0, 0},
    {"info", 0, 0, 0},
    {"ring", 0, 0, OPT_JSON},
    {"load", 0, 0, 0},
};

typedef struct cli {
    const char *addr, *token;
    int timeout_ms, pretty;
    int timeout_set; /* --timeout given: get/put/del also send opts.timeout_ms */
    const cmd_def_t *cmd;
    const char *space, *r, *w, *ctx, *ttl; /* NULL when not given */
    int raw, json, receipt;
    char **args; /* positional words after the command */
    int nargs;
} cli_t;

/* With a reason: the reason and a hint; without: the full help. */
static int usage(const char *why)
{
    if (why) {
        fprintf(stderr, "moor: %s (moor --help for usage)\n", why);
        return EXIT_USAGE;
    }
    fputs("usage: moor [-h host:port] [-a token] [--timeout ms] [--pretty] CMD ...\n"
          "  get KEY [--space S] [--r N|one|quorum|all] [--raw] [--receipt]\n"
          "  put KEY VALUE [--space S] [--ctx CTX] [--w N|one|quorum|all] [--raw] [--receipt]\n"
          "      [--ttl MS]  the value expires MS milliseconds after the write (opts.ttl_ms)\n"
          "  del KEY [--space S] [--ctx CTX] [--w N|one|quorum|all] [--receipt]\n"
          "  call HANDLER [ARG-JSON...]\n"
          "  ring [--json]       members: id, address, zone, status, vnodes, share (* = self)\n"
          "  where KEY [--space S]  the key's replicas, and fallbacks for those down\n"
          "  ping | info | help\n"
          "  load                every member's load figures (README \"Automatic scaling\")\n"
          "  bench [--conns N] [--pipeline N] [--keys N] [--value-size B] [--ratio R]\n"
          "        [--duration S] [--space S] [--call HANDLER]  (bench --help)\n"
          "  repair [--space S] [--range LO:HI]... [--stop] [--restart] [--no-wait] [--json]\n"
          "         [--timeout SECONDS]  anti-entropy repair of what the node replicates,\n"
          "         with every other replica: progress on stderr, summary on stdout\n"
          "  leave [--cancel] [--wait] [--json]  hand this node's ranges off, then `left`\n"
          "  remove ID           take a dead member out; the others repair its ranges\n"
          "  transfers [--rate-mb-s X] [--concurrency N] [--watch S] [--json]\n"
          "        every range in motion in the cluster: from, to, keys, bytes, rate, ETA\n"
          "VALUE and ARG are JSON ({\"$bin\":\"<base64>\"} for bytes); CTX is the base64 ctx\n"
          "that get/put print.  get prints {\"values\":[V],\"ctx\":CTX}, or with siblings\n"
          "{\"siblings\":[V...],\"clock\":{NODE:COUNTER...},\"ctx\":CTX}; null if missing.\n"
          "--r/--w: how many replicas must answer (a count, or one, quorum, all).\n"
          "--receipt: the answer says what each replica asked answered.\n"
          "--timeout bounds the command; get/put/del send 4/5 of it to the node as\n"
          "opts.timeout_ms.  Default address 127.0.0.1:7700, timeout 5000 ms.\n"
          "Exit: 0 ok, 1 error answer, 2 usage/bad input, 3 connection failure.\n",
          stderr);
    return EXIT_USAGE;
}

/* ---- argument parsing ------------------------------------------------------------ */

static int global_opt(cli_t *c, const char *a, const char *val, int *used)
{
    char *end;

    *used = 1;
    if (strcmp(a, "-h") == 0 || strcmp(a, "--host") == 0) {
        c->addr = val;
    } else if (strcmp(a, "-a") == 0 || strcmp(a, "--auth") == 0) {
        c->token = val;
    } else if (strcmp(a, "--timeout") == 0) {
        long t = val ? strtol(val, &end, 10) : 0;
        if (!val || *end || t <= 0 || t > 86400000)
            return usage("--timeout takes milliseconds (1..86400000)");
        c->timeout_ms = (int)t;
        c->timeout_set = 1;
    } else if (strcmp(a, "--pretty") == 0) {
        c->pretty = 1;
        *used = 0;
    } else {
        return 1; /* not a global option */
    }
    if (*used && !val) {
        fprintf(stderr, "moor: %s needs a value\n", a);
        return EXIT_USAGE;
    }
    return 0;
}

/* A read/write level: a replica count, or one of the names. */
static int level_ok(const char *v)
{
    size_t digits = strspn(v, "0123456789");

    if (digits && !v[digits])
        return digits < 10 && strtoul(v, NULL, 10) >= 1;
    return !strcmp(v, "one") || !strcmp(v, "quorum") || !strcmp(v, "all");
}

static int cmd_opt(cli_t *c, const char *a, const char *val, int *used)
{
    static const struct {
        const char *name;
        int bit;
    } names[] = {{"--space", OPT_SPACE},     {"--r", OPT_R},     {"--w", OPT_W},
                 {"--ctx", OPT_CTX},         {"--raw", OPT_RAW}, {"--json", OPT_JSON},
                 {"--receipt", OPT_RECEIPT}, {"--ttl", OPT_TTL}};
    int bit = 0;

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(a, names[i].name) == 0)
            bit = names[i].bit;
    char why[128];

    if (!bit) {
        snprintf(why, sizeof(why), "unknown option %s", a);
        return usage(why);
    }
    if (!(bit & c->cmd->opts)) {
        snprintf(why, sizeof(why), "option %s does not apply to %s", a, c->cmd->name);
        return usage(why);
    }
    *used = bit != OPT_RAW && bit != OPT_JSON && bit != OPT_RECEIPT;
    if (!*used) {
        *(bit == OPT_RAW ? &c->raw : bit == OPT_JSON ? &c->json : &c->receipt) = 1;
        return 0;
    }
    if (!val) {
        fprintf(stderr, "moor: %s needs a value\n", a);
        return EXIT_USAGE;
    }
    if ((bit == OPT_R || bit == OPT_W) && !level_ok(val)) {
        snprintf(why, sizeof(why), "%s takes a count (1 or more) or one, quorum, all; got '%.30s'",
                 a, val);
        return usage(why);
    }
    if (bit == OPT_TTL && !(strspn(val, "0123456789") == strlen(val) && strtoull(val, NULL, 10))) {
        snprintf(why, sizeof(why), "--ttl takes a positive count of milliseconds; got '%.30s'",
                 val);
        return usage(why);
    }
    *(bit == OPT_SPACE ? &c->space
      : bit == OPT_R   ? &c->r
      : bit == OPT_W   ? &c->w
      : bit == OPT_TTL ? &c->ttl
                       : &c->ctx) = val;
    return 0;
}

static int is_option(const char *a)
{
    return (a[0] == '-' && (a[1] == 'h' || a[1] == 'a') && !a[2]) || !strncmp(a, "--", 2);
}

/* Options anywhere; the first other word is the command, the rest its args. */
static int parse_args(cli_t *c, int argc, char **argv, int *sub_at)
{
    int only_words = 0;

    *sub_at = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        int used = 0, rc;
        if (!only_words && strcmp(a, "--") == 0) {
            only_words = 1;
            continue;
        }
        if ((!only_words && strcmp(a, "--help") == 0) || (!c->cmd && strcmp(a, "help") == 0))
            return usage(NULL), -1; /* help asked for: exit 0 */
        if (!only_words && is_option(a)) {
            if ((rc = global_opt(c, a, val, &used)) == 1 && !c->cmd) {
                char why[96];
                snprintf(why, sizeof(why), "option %.40s must come after the command", a);
                rc = usage(why);
            } else if (rc == 1) {
                rc = cmd_opt(c, a, val, &used);
            }
            if (rc)
                return rc;
            i += used;
            continue;
        }
        if (!c->cmd && (strcmp(a, "bench") == 0 || strcmp(a, "repair") == 0 ||
                        strcmp(a, "leave") == 0 || strcmp(a, "remove") == 0 ||
                        strcmp(a, "transfers") == 0)) {
            *sub_at = i;
            return 0;
        }
        if (!c->cmd) {
            for (size_t k = 0; k < sizeof(commands) / sizeof(commands[0]); k++)
                if (strcmp(a, commands[k].name) == 0)
                    c->cmd = &commands[k];
            if (!c->cmd) {
                char why[96];
                snprintf(why, sizeof(why), "unknown command '%.60s'", a);
                return usage(why);
            }
            continue;
        }
        c->args[c->nargs++] = argv[i];
    }
    return 0;
}

static int check_args(const cli_t *c)
{
    if (!c->cmd)
        return usage("no command given");
    if (c->nargs < c->cmd->min_args || c->nargs > c->cmd->max_args) {
        char why[96];
        snprintf(why, sizeof(why), "%s takes %d%s argument%s, got %d", c->cmd->name,
                 c->cmd->min_args, c->cmd->max_args > c->cmd->min_args ? " or more" : "",
                 c->cmd->min_args == 1 ? "" : "s", c->nargs);
        return usage(why);
    }
    return 0;
}

/* ---- building params --------------------------------------------------------------- */

static int pack_json_arg(const char *what, const char *text, moor_buf_t *out)
{
    int rc = moor_json_to_mp(text, strlen(text), out, NULL);

    if (rc)
        fprintf(stderr, "moor: %s: %s\n", what, moor_diag_msg(rc));
    return rc ? EXIT_USAGE : 0;
}

/* r/w (checked by level_ok): a count goes as an integer, a name as a string. */
static void pack_level(msgpack_packer *pk, const char *v)
{
    if (strspn(v, "0123456789") == strlen(v))
        msgpack_pack_uint32(pk, (uint32_t)strtoul(v, NULL, 10));
    else
        msgpack_pack_str_with_body(pk, v, strlen(v));
}

static void pack_cstr(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str_with_body(pk, s, strlen(s));
}

static int pack_opts(const cli_t *c, msgpack_packer *pk)
{
    moor_buf_t ctx = MOOR_BUF_INIT;

    if (c->ctx && moor_json_b64_decode(c->ctx, strlen(c->ctx), &ctx)) {
        fprintf(stderr, "moor: --ctx: %s\n", moor_diag_msg(MOOR_EINVAL));
        return EXIT_USAGE;
    }
    msgpack_pack_map(pk, (c->space != NULL) + (c->r != NULL) + (c->w != NULL) + (c->ctx != NULL) +
                             (c->timeout_set != 0) + (c->receipt != 0) + (c->ttl != NULL));
    if (c->ttl) /* digits only (cmd_opt); the node bounds it */
        pack_cstr(pk, "ttl_ms"), msgpack_pack_uint64(pk, strtoull(c->ttl, NULL, 10));
    if (c->receipt)
        pack_cstr(pk, "receipt"), msgpack_pack_true(pk);
    if (c->space)
        pack_cstr(pk, "space"), pack_cstr(pk, c->space);
    if (c->r)
        pack_cstr(pk, "r"), pack_level(pk, c->r);
    if (c->w)
        pack_cstr(pk, "w"), pack_level(pk, c->w);
    if (c->ctx) {
        pack_cstr(pk, "ctx");
        msgpack_pack_bin_with_body(pk, ctx.data, ctx.len);
    }
    if (c->timeout_set) {
        /* The node's budget is carved out of the client's, so its answer
         * (TIMEOUT, QUORUM_FAILED) comes back before the client times out. */
        pack_cstr(pk, "timeout_ms");
        msgpack_pack_uint32(pk, (uint32_t)(c->timeout_ms - c->timeout_ms / 5));
    }
    moor_buf_free(&ctx);
    return 0;
}

/* params of the command into out; *np gets their count. */
static int build_params(const cli_t *c, moor_buf_t *out, uint32_t *np)
{
    msgpack_packer pk;
    const char *name = c->cmd->name;
    int rc;

    moor_mp_packer_init(&pk, out);
    *np = (uint32_t)c->nargs;
    if (!strcmp(name, "call")) {
        pack_cstr(&pk, c->args[0]);
        for (int i = 1; i < c->nargs; i++) {
            char what[32];
            snprintf(what, sizeof(what), "argument %d", i);
            if ((rc = pack_json_arg(what, c->args[i], out)))
                return rc;
        }
        return 0;
    }
    if (c->nargs == 0)
        return 0;
    pack_cstr(&pk, c->args[0]); /* the key */
    if (!strcmp(name, "put")) {
        if (c->raw)
            pack_cstr(&pk, c->args[1]);
        else if ((rc = pack_json_arg("VALUE", c->args[1], out)))
            return rc;
    }
    *np = (uint32_t)c->nargs + 1;
    return pack_opts(c, &pk);
}

/* ---- printing ------------------------------------------------------------------------ */

static int print_json(const cli_t *c, const char *mp, size_t len)
{
    moor_buf_t out = MOOR_BUF_INIT;
    const char *p = mp;
    int rc = moor_json_from_mp(&p, mp + len, c->pretty ? MOOR_JSON_PRETTY : 0, &out);

    if (rc == 0) {
        fwrite(out.data, 1, out.len, stdout);
        fputc('\n', stdout);
    } else {
        fprintf(stderr, "moor: cannot print the answer: %s\n", moor_diag_msg(rc));
    }
    moor_buf_free(&out);
    return rc ? EXIT_TRANSPORT : 0;
}

/* get --raw: each sibling on its own line, strings and bytes bare. */
static int print_raw_values(const cli_t *c, const char *res, size_t rlen)
{
    const char *p = res, *end = res + rlen, *k;
    uint32_t n, kl, m;

    if (moor_mp_read_map(&p, end, &n))
        return print_json(c, res, rlen);
    while (n--) {
        int is_values =
            moor_mp_read_str(&p, end, &k, &kl) == 0 && kl == 6 && !memcmp(k, "values", 6);
        if (is_values && moor_mp_read_array(&p, end, &m) == 0) {
            for (uint32_t i = 0; i < m; i++) {
                const char *s, *q = p;
                uint32_t sl;
                int rc;
                if (moor_mp_read_strbin(&p, end, &s, &sl) == 0) {
                    fwrite(s, 1, sl, stdout);
                    fputc('\n', stdout);
                } else if ((rc = moor_mp_skip(&p, end, MOOR_MP_MAX_DEPTH)) ||
                           (rc = print_json(c, q, (size_t)(p - q)))) {
                    return EXIT_TRANSPORT;
                }
            }
            return 0;
        }
        if (moor_mp_skip(&p, end, MOOR_MP_MAX_DEPTH) || moor_mp_skip(&p, end, MOOR_MP_MAX_DEPTH))
            break;
    }
    return print_json(c, res, rlen);
}

/* ring: the table (or JSON with --json, or if the answer is not shaped as
 * a ring answer). */
static int print_ring(const cli_t *c, const moor_client_reply_t *r)
{
    moor_buf_t text = MOOR_BUF_INIT;
    int rc;

    if (c->json || moor_show_ring(r->result, r->rlen, &text))
        rc = print_json(c, r->result, r->rlen);
    else
        rc = fwrite(text.data, 1, text.len, stdout) == text.len ? 0 : EXIT_TRANSPORT;
    moor_buf_free(&text);
    return rc;
}

static int print_result(const cli_t *c, const moor_client_reply_t *r)
{
    const char *name = c->cmd->name;
    moor_buf_t tmp = MOOR_BUF_INIT;
    int rc;

    if (!strcmp(name, "get") && c->raw &&
        moor_mp_peek(r->result, r->result + r->rlen) != MOOR_MP_NIL)
        return print_raw_values(c, r->result, r->rlen);
    if (!strcmp(name, "ring"))
        return print_ring(c, r);
    if (strcmp(name, "get") && strcmp(name, "put"))
        return print_json(c, r->result, r->rlen);
    rc = !strcmp(name, "get") ? moor_show_get(r->result, r->rlen, &tmp)
                              : moor_show_ctx(r->result, r->rlen, &tmp);
    if (rc) {
        moor_buf_free(&tmp);
        fprintf(stderr, "moor: malformed answer\n");
        return EXIT_TRANSPORT;
    }
    rc = print_json(c, tmp.data, tmp.len);
    moor_buf_free(&tmp);
    return rc;
}

/* ---- running --------------------------------------------------------------------------- */

/* The diagnostic names the address or the step; the code's name is added
 * when it has one of Moor's own (TIMEDOUT, PROTO, ...). */
static int transport_failure(const char *what, int rc)
{
    const char *name = moor_err_name(rc);

    if (strcmp(name, "UNKNOWN") != 0)
        fprintf(stderr, "moor: %s: %s (%s)\n", what, moor_diag_msg(rc), name);
    else
        fprintf(stderr, "moor: %s: %s\n", what, moor_diag_msg(rc));
    return EXIT_TRANSPORT;
}

static int error_answer(const moor_client_reply_t *r)
{
    fprintf(stderr, "moor: %s: %s\n", r->error_code, r->error_msg);
    return EXIT_ERROR_REPLY;
}

static int authenticate(const cli_t *c, moor_client_t *cl)
{
    moor_buf_t tok = MOOR_BUF_INIT;
    moor_client_reply_t r;
    msgpack_packer pk;
    int rc;

    moor_mp_packer_init(&pk, &tok);
    pack_cstr(&pk, c->token);
    rc = moor_client_call(cl, "auth", tok.data, tok.len, 1, &r);
    moor_buf_free(&tok);
    if (rc)
        return transport_failure("auth", rc);
    return r.error_code ? error_answer(&r) : 0;
}

static int run_command(const cli_t *c)
{
    moor_buf_t params = MOOR_BUF_INIT;
    moor_client_t *cl = NULL;
    moor_client_reply_t r;
    uint32_t np = 0;
    int rc, status;

    if ((status = build_params(c, &params, &np)))
        goto done;
    if ((rc = moor_client_connect(c->addr, c->timeout_ms, &cl))) {
        status = transport_failure("cannot connect", rc);
        goto done;
    }
    if (c->token && (status = authenticate(c, cl)))
        goto done;
    if ((rc = moor_client_call(cl, c->cmd->name, params.data, params.len, np, &r)))
        status = transport_failure(c->cmd->name, rc);
    else
        status = r.error_code ? error_answer(&r) : print_result(c, &r);
done:
    moor_client_close(cl);
    moor_buf_free(&params);
    if (fflush(stdout) != 0 && status == 0)
        status = EXIT_TRANSPORT;
    return status;
}

int main(int argc, char **argv)
{
    cli_t c;
    int sub_at, rc;

    memset(&c, 0, sizeof(c));
    c.addr = "127.0.0.1:7700";
    c.token = getenv("MOOR_TOKEN");
    if (c.token && !*c.token)
        c.token = NULL;
    c.timeout_ms = MOOR_CLIENT_TIMEOUT_MS;
    if (!(c.args = calloc((size_t)argc + 1, sizeof(char *))))
        return EXIT_TRANSPORT;
    rc = parse_args(&c, argc, argv, &sub_at);
    if (rc == 0 && sub_at && strcmp(argv[sub_at], "repair") == 0)
        rc =
            moor_repair_main(c.addr, c.token, c.timeout_ms, c.pretty, argc - sub_at, argv + sub_at);
    else if (rc == 0 && sub_at && strcmp(argv[sub_at], "bench") != 0)
        rc = moor_members_main(c.addr, c.token, c.timeout_ms, c.pretty, argc - sub_at,
                               argv + sub_at);
    else if (rc == 0 && sub_at)
        rc = moor_bench_main(c.addr, c.token, c.timeout_ms, argc - sub_at, argv + sub_at);
    else if (rc == 0 && (rc = check_args(&c)) == 0)
        rc = run_command(&c);
    free(c.args);
    return rc < 0 ? 0 : rc;
}
