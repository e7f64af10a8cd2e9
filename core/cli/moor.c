/*
 * moor.c -- the `moor` command-line client: one command per run against
 * one node.  Words are read by args.h (KEY, VALUE, CTX), answers shown by
 * human.h for a person or, with --json, as one JSON value (json.h has the
 * mapping; show.h adds a get's decoded clock).
 *
 *   moor [-h host:port] [-a token] [--timeout ms] [--pretty] CMD ...
 *     get KEY [--space S] [--r N|one|quorum|all] [--raw|--bin|--out FILE] [--receipt] [--json]
 *     put KEY VALUE [--space S] [--ctx CTX|--blind] [--r L] [--w L] [--raw|--bin] [--receipt]
 *         [--ttl MS]
 *     del KEY [--space S] [--ctx CTX|--blind] [--r L] [--w L] [--receipt] [--json]
 *     call HANDLER [ARG-JSON...]
 *     where KEY [--space S] | ring | load | ping | info        (each with [--json])
 *     bench [options]                       (bench.c)
 *     repair [options]                      (repair.c)
 *     leave | remove ID | transfers         (members.c)
 *     top [options]                         (top.c)
 *     scan [options]                        (scan.c)
 *     snapshot [--tag T] | snapshot list | snapshot delete NAME  (snapshot.c)
 *     slowlog [--count N] [--len] [--reset] [--json]               (slowlog.c)
 *     help                                  (as --help)
 * KEY may be replaced by --key-hex HEX (a binary key) or given as
 * {"$bin": "<base64>"}; VALUE is JSON, @FILE, - (stdin) or @@TEXT.
 *
 * put and del read the key first (a get with the same space and --r) and
 * write with the ctx it answered, so that a person's put replaces the
 * value and del removes it; --blind writes without a ctx (what the
 * protocol does with none: siblings), --ctx CTX writes with that ctx.  The
 * read and the write are two requests: a writer between them still makes
 * a sibling.  A ctx is shown and taken as {"$bin": "<base64>"}, the JSON
 * of bin everywhere (a bare base64 --ctx is still taken).
 *
 * --r and --w take a replica count or one/quorum/all (sent as opts r/w:
 * an integer or that string).  --timeout bounds each request (connect and
 * call); get, put and del also send it as opts.timeout_ms, less a fifth,
 * so that the node's own TIMEOUT or QUORUM_FAILED answer arrives before
 * the client gives up.
 *
 * Exit status: 0 success, 1 the node answered with an error (code and
 * message on stderr), 2 usage or bad input (bad JSON names the byte; a
 * file that cannot be read or written), 3 transport failure (cannot
 * connect, timeout, connection lost).
 *
 * Options may come before or after the command's words; "--" ends them
 * (for a key that starts with "--").  -a may also come from $MOOR_TOKEN.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <msgpack.h>

#include "cli/args.h"
#include "cli/bench.h"
#include "cli/human.h"
#include "cli/json.h"
#include "cli/members.h"
#include "cli/repair.h"
#include "cli/scan.h"
#include "cli/show.h"
#include "cli/top.h"
#include "cli/slowlog.h"
#include "cli/snapshot.h"
#include "net/client.h"
#include "util/mp.h"
#include "util/err.h"

enum { EXIT_ERROR_REPLY = 1, EXIT_USAGE = 2, EXIT_TRANSPORT = 3 };

/* reload's default wait: the config's time budget (host.h
 * MOOR_LUA_CONFIG_TIMEOUT_MS, 5 s) and room for the answer. */
#define RELOAD_TIMEOUT_MS 10000

/* Which command options a command accepts. */
enum {
    OPT_SPACE = 1 << 0,
    OPT_R = 1 << 1,
    OPT_W = 1 << 2,
    OPT_CTX = 1 << 3,
    OPT_RAW = 1 << 4,
    OPT_JSON = 1 << 5,
    OPT_RECEIPT = 1 << 6,
    OPT_BIN = 1 << 7,
    OPT_KEYHEX = 1 << 8,
    OPT_BLIND = 1 << 9,
    OPT_OUT = 1 << 10,
    OPT_TTL = 1 << 11
};

/* Options that take no value. */
#define OPT_FLAGS (OPT_RAW | OPT_JSON | OPT_RECEIPT | OPT_BIN | OPT_BLIND)

typedef struct cmd_def {
    const char *name;
    int min_args, max_args; /* positional words after the command, KEY included */
    int opts;               /* OPT_* accepted; OPT_KEYHEX: the first word is KEY */
} cmd_def_t;

static const cmd_def_t commands[] = {
    {"get", 1, 1,
     OPT_SPACE | OPT_R | OPT_RAW | OPT_BIN | OPT_OUT | OPT_RECEIPT | OPT_JSON | OPT_KEYHEX},
    {"put", 2, 2,
     OPT_SPACE | OPT_R | OPT_W | OPT_CTX | OPT_BLIND | OPT_RAW | OPT_BIN | OPT_RECEIPT | OPT_JSON |
         OPT_KEYHEX | OPT_TTL},
    {"del", 1, 1,
     OPT_SPACE | OPT_R | OPT_W | OPT_CTX | OPT_BLIND | OPT_RECEIPT | OPT_JSON | OPT_KEYHEX},
    {"where", 1, 1, OPT_SPACE | OPT_JSON | OPT_KEYHEX},
    {"call", 1, 1 << 20, OPT_JSON},
    {"ping", 0, 0, OPT_JSON},
    {"info", 0, 0, OPT_JSON},
    {"ring", 0, 0, OPT_JSON},
    {"load", 0, 0, OPT_JSON},
    {"reload", 0, 0, OPT_JSON},
};

typedef struct cli {
    const char *addr, *token;
    int timeout_ms, pretty;
    int timeout_set; /* --timeout given: get/put/del also send opts.timeout_ms */
    const cmd_def_t *cmd;
    const char *space, *r, *w, *ctx, *key_hex, *out, *ttl; /* NULL when not given */
    int opts_given;                                        /* OPT_* seen */
    char **args;                                           /* positional words after the command */
    int nargs;
    const char *key, *value; /* the KEY and VALUE words (NULL: none, or --key-hex) */
} cli_t;

#define HAS(c, opt) (((c)->opts_given & (opt)) != 0)
#define IS(c, cmdname) (strcmp((c)->cmd->name, (cmdname)) == 0)

/* With a reason: the reason and a hint; without: the full help. */
static int usage(const char *why)
{
    if (why) {
        fprintf(stderr, "moor: %s (moor --help for usage)\n", why);
        return EXIT_USAGE;
    }
    fputs("usage: moor [-h host:port] [-a token] [--timeout ms] [--pretty] CMD ...\n"
          "  get KEY [--space S] [--r N|one|quorum|all] [--raw | --bin | --out FILE] [--receipt]\n"
          "  put KEY VALUE [--space S] [--ctx CTX | --blind] [--r L] [--w L] [--raw | --bin]\n"
          "        [--receipt] [--ttl MS]  (--ttl: the value expires MS ms after the write)\n"
          "  del KEY [--space S] [--ctx CTX | --blind] [--r L] [--w L] [--receipt]\n"
          "  call HANDLER [ARG-JSON...]\n"
          "  where KEY [--space S]  the key's replicas, and fallbacks for those down\n"
          "  ring                members: id, address, zone, status, vnodes, share (* = self)\n"
          "  load                every member's load figures (README \"Automatic scaling\")\n"
          "  reload              run the node's config file again and take it live\n"
          "                      (README \"Hot reload\"); exit 1 and the reason if refused\n"
          "  ping | info | help\n"
          "  bench [--conns N] [--pipeline N] [--keys N] [--value-size B] [--ratio R]\n"
          "        [--duration S] [--space S] [--call HANDLER] [--json]  (bench --help)\n"
          "  repair [--space S] [--range LO:HI]... [--stop] [--restart] [--no-wait] [--json]\n"
          "         [--timeout SECONDS]  anti-entropy repair of what the node replicates,\n"
          "         with every other replica: progress on stderr, summary on stdout\n"
          "  leave [--cancel] [--wait] [--json]  hand this node's ranges off, then `left`\n"
          "  remove ID [--json]  take a dead member out; the others repair its ranges\n"
          "  transfers [--rate-mb-s X] [--concurrency N] [--watch S] [--json]\n"
          "        every range in motion in the cluster: from, to, keys, bytes, rate, ETA\n"
          "  top [--interval S] [--count N] [--json]  live per-member req/s, p99, hints,\n"
          "        transfers, bytes (the `metrics` method of every member)\n"
          "  scan [--space S] [--prefix P] [--limit N] [--values] [--cursor C] [--page N]\n"
          "       [--r LEVEL] [--json]  the keyspace's keys, one per line (scan --help)\n"
          "  snapshot [--tag T] [--json]  a point-in-time copy of the node's data, next to it\n"
          "  snapshot list [--json] | snapshot delete NAME  (README \"Snapshots and restore\")\n"
          "  slowlog [--count N] [--len] [--reset] [--json]  requests over slowlog.threshold_ms\n"
          "Every command takes --json: its answer as one JSON value on stdout (--pretty\n"
          "indents it); without it, text for a person.\n"
          "KEY: a text key; {\"$bin\":\"<base64>\"} or --key-hex HEX (in place of KEY) for\n"
          "  a binary key.\n"
          "VALUE: JSON ({\"$bin\":\"<base64>\"} for bytes); @FILE reads it from FILE, - from\n"
          "  stdin, @@TEXT is the literal @TEXT.  --raw sends the bytes (the argument, file\n"
          "  or stdin) as a string, --bin as binary, instead of parsing them as JSON.\n"
          "put and del read the key first and write with its ctx, so put replaces the\n"
          "  value and del deletes it (one more round trip, not atomic: a concurrent\n"
          "  writer can still add a sibling).  --blind writes without a ctx: the value\n"
          "  goes beside what is there (siblings).  --ctx CTX writes with that ctx.\n"
          "CTX: {\"$bin\":\"<base64>\"} as get, put and `call` print and take (bare base64\n"
          "  is taken too).\n"
          "get prints each value as JSON and a ctx line; with siblings it says how to\n"
          "  merge them on stderr.  --raw (or --bin) prints str and bin values as bare\n"
          "  bytes; --out FILE writes the one value's bytes to FILE.  --json prints\n"
          "  {\"values\":[V],\"ctx\":CTX}, or {\"siblings\":[V...],\"clock\":{...},\"ctx\":CTX};\n"
          "  null for a missing key.\n"
          "--r/--w: how many replicas must answer (a count, or one, quorum, all).\n"
          "--receipt: the answer says what each replica asked answered.\n"
          "--timeout bounds each request; get/put/del send 4/5 of it to the node as\n"
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

static const struct {
    const char *name;
    int bit;
} opt_names[] = {{"--space", OPT_SPACE},     {"--r", OPT_R},     {"--w", OPT_W},
                 {"--ctx", OPT_CTX},         {"--raw", OPT_RAW}, {"--json", OPT_JSON},
                 {"--receipt", OPT_RECEIPT}, {"--bin", OPT_BIN}, {"--key-hex", OPT_KEYHEX},
                 {"--blind", OPT_BLIND},     {"--out", OPT_OUT}, {"--ttl", OPT_TTL}};

static int cmd_opt(cli_t *c, const char *a, const char *val, int *used)
{
    int bit = 0;
    char why[128];

    for (size_t i = 0; i < sizeof(opt_names) / sizeof(opt_names[0]); i++)
        if (strcmp(a, opt_names[i].name) == 0)
            bit = opt_names[i].bit;
    if (!bit) {
        snprintf(why, sizeof(why), "unknown option %s", a);
        return usage(why);
    }
    if (!(bit & c->cmd->opts)) {
        snprintf(why, sizeof(why), "option %s does not apply to %s", a, c->cmd->name);
        return usage(why);
    }
    c->opts_given |= bit;
    *used = !(bit & OPT_FLAGS);
    if (!*used)
        return 0;
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
      : bit == OPT_CTX ? &c->ctx
      : bit == OPT_OUT ? &c->out
      : bit == OPT_TTL ? &c->ttl
                       : &c->key_hex) = val;
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
        if (!c->cmd &&
            (strcmp(a, "bench") == 0 || strcmp(a, "repair") == 0 || strcmp(a, "leave") == 0 ||
             strcmp(a, "remove") == 0 || strcmp(a, "transfers") == 0 || strcmp(a, "top") == 0 ||
             strcmp(a, "scan") == 0 || strcmp(a, "snapshot") == 0 || strcmp(a, "slowlog") == 0)) {
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

/* Options that exclude each other, or do nothing together. */
static int check_combinations(const cli_t *c)
{
    if (HAS(c, OPT_RAW) && HAS(c, OPT_BIN))
        return usage("--raw and --bin exclude each other");
    if (HAS(c, OPT_CTX) && HAS(c, OPT_BLIND))
        return usage("--ctx and --blind exclude each other");
    if (HAS(c, OPT_R) && (HAS(c, OPT_CTX) || HAS(c, OPT_BLIND)) && !IS(c, "get"))
        return usage("--r applies to the read that put and del make first, not done with "
                     "--ctx or --blind");
    if (IS(c, "get") && HAS(c, OPT_JSON) && HAS(c, OPT_RAW | OPT_BIN))
        return usage("get --raw/--bin print bare bytes: not with --json");
    if (IS(c, "get") && HAS(c, OPT_OUT) && HAS(c, OPT_RAW | OPT_BIN))
        return usage("get --out writes the value's bytes: not with --raw/--bin");
    return 0;
}

/* The positional words: KEY (unless --key-hex) and VALUE, then the count. */
static int check_args(cli_t *c)
{
    int keyed, min, max;

    if (!c->cmd)
        return usage("no command given");
    keyed = (c->cmd->opts & OPT_KEYHEX) != 0;
    min = c->cmd->min_args - (keyed && c->key_hex);
    max = c->cmd->max_args - (keyed && c->key_hex);
    if (c->nargs < min || c->nargs > max) {
        char why[128];
        snprintf(why, sizeof(why), "%s takes %d%s argument%s%s, got %d", c->cmd->name, min,
                 max > min ? " or more" : "", min == 1 ? "" : "s",
                 keyed && c->key_hex ? " besides --key-hex" : "", c->nargs);
        return usage(why);
    }
    if (keyed && !c->key_hex)
        c->key = c->args[0];
    if (IS(c, "put"))
        c->value = c->args[c->nargs - 1];
    return check_combinations(c);
}

/* ---- building params --------------------------------------------------------------- */

/* A bad word (KEY, VALUE, CTX, ARG): its diagnostic, exit 2. */
static int bad_input(int rc)
{
    fprintf(stderr, "moor: %s\n", moor_diag_msg(rc));
    return EXIT_USAGE;
}

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

/* The opts map of a request: `read` for a get (the command's, or the one
 * put and del make first), else the write; ctx NULL for none. */
static void pack_opts(const cli_t *c, msgpack_packer *pk, int read, const moor_buf_t *ctx)
{
    int receipt = HAS(c, OPT_RECEIPT) && (read == IS(c, "get"));
    const char *r = read ? c->r : NULL, *w = read ? NULL : c->w;
    int timeout = c->timeout_set;
    const char *ttl = read ? NULL : c->ttl;

    msgpack_pack_map(pk, (c->space != NULL) + (r != NULL) + (w != NULL) + (ctx != NULL) + timeout +
                             receipt + (ttl != NULL));
    if (ttl) /* digits only (cmd_opt); the node bounds it */
        pack_cstr(pk, "ttl_ms"), msgpack_pack_uint64(pk, strtoull(ttl, NULL, 10));
    if (receipt)
        pack_cstr(pk, "receipt"), msgpack_pack_true(pk);
    if (c->space)
        pack_cstr(pk, "space"), pack_cstr(pk, c->space);
    if (r)
        pack_cstr(pk, "r"), pack_level(pk, r);
    if (w)
        pack_cstr(pk, "w"), pack_level(pk, w);
    if (ctx) {
        pack_cstr(pk, "ctx");
        msgpack_pack_bin_with_body(pk, ctx->data, ctx->len);
    }
    if (timeout) {
        /* The node's budget is carved out of the client's, so its answer
         * (TIMEOUT, QUORUM_FAILED) comes back before the client times out. */
        pack_cstr(pk, "timeout_ms");
        msgpack_pack_uint32(pk, (uint32_t)(c->timeout_ms - c->timeout_ms / 5));
    }
}

/* The words of a command, read before anything is sent. */
typedef struct words {
    moor_buf_t key;   /* the key, one MessagePack object (keyed commands) */
    moor_buf_t value; /* put's value, one MessagePack object */
    moor_buf_t ctx;   /* ctx bytes to write with */
    int have_ctx;     /* ctx holds one (--ctx, or the read before a write) */
} words_t;

static int read_words(const cli_t *c, words_t *wd)
{
    moor_cli_value_mode_t mode = HAS(c, OPT_RAW)   ? MOOR_CLI_VALUE_RAW
                                 : HAS(c, OPT_BIN) ? MOOR_CLI_VALUE_BIN
                                                   : MOOR_CLI_VALUE_JSON;
    int rc;

    if ((c->cmd->opts & OPT_KEYHEX) && (rc = moor_cli_key_parse(c->key, c->key_hex, &wd->key)))
        return bad_input(rc);
    if (c->value && (rc = moor_cli_value_read(c->value, mode, &wd->value)))
        return bad_input(rc);
    if (c->ctx) {
        if ((rc = moor_cli_ctx_parse(c->ctx, &wd->ctx)))
            return bad_input(rc);
        wd->have_ctx = 1;
    }
    return 0;
}

/* params of the command into out; *np gets their count. */
static int build_params(const cli_t *c, const words_t *wd, moor_buf_t *out, uint32_t *np)
{
    msgpack_packer pk;
    int rc;

    moor_mp_packer_init(&pk, out);
    *np = (uint32_t)c->nargs;
    if (IS(c, "call")) {
        pack_cstr(&pk, c->args[0]);
        for (int i = 1; i < c->nargs; i++) {
            char what[32];
            snprintf(what, sizeof(what), "argument %d", i);
            if ((rc = pack_json_arg(what, c->args[i], out)))
                return rc;
        }
        return 0;
    }
    if (!(c->cmd->opts & OPT_KEYHEX))
        return 0;
    moor_buf_append(out, wd->key.data, wd->key.len);
    *np = 2;
    if (IS(c, "put")) {
        moor_buf_append(out, wd->value.data, wd->value.len);
        *np = 3;
    }
    pack_opts(c, &pk, IS(c, "get") || IS(c, "where"), wd->have_ctx ? &wd->ctx : NULL);
    return 0;
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

/* Text made by human.h, or the answer as JSON when it is not of the shape
 * the text expects (a node newer than this CLI). */
static int print_text(const cli_t *c, int rc, const moor_buf_t *text, const char *res, size_t rlen)
{
    if (rc)
        return print_json(c, res, rlen);
    return fwrite(text->data, 1, text->len, stdout) == text->len ? 0 : EXIT_TRANSPORT;
}

/* The span of the value of map entry `name` in res (NULL when absent). */
static const char *map_field(const char *res, size_t rlen, const char *name, const char **vend)
{
    const char *p = res, *end = res + rlen, *k;
    uint32_t n, kl;

    if (moor_mp_read_map(&p, end, &n))
        return NULL;
    while (n--) {
        int hit = moor_mp_read_str(&p, end, &k, &kl) == 0 && kl == strlen(name) &&
                  memcmp(k, name, kl) == 0;
        const char *v = p;
        if (moor_mp_skip(&p, end, MOOR_MP_MAX_DEPTH))
            return NULL;
        if (hit) {
            *vend = p;
            return v;
        }
    }
    return NULL;
}

/* get --raw / --bin: each sibling on its own line, strings and bytes bare. */
static int print_raw_values(const cli_t *c, const char *res, size_t rlen)
{
    const char *vend, *p = map_field(res, rlen, "values", &vend);
    uint32_t m;

    if (!p || moor_mp_read_array(&p, vend, &m))
        return print_json(c, res, rlen);
    for (uint32_t i = 0; i < m; i++) {
        const char *s, *q = p;
        uint32_t sl;
        if (moor_mp_read_strbin(&p, vend, &s, &sl) == 0) {
            fwrite(s, 1, sl, stdout);
            fputc('\n', stdout);
        } else if (moor_mp_skip(&p, vend, MOOR_MP_MAX_DEPTH) || print_json(c, q, (size_t)(p - q))) {
            return EXIT_TRANSPORT;
        }
    }
    return 0;
}

/* KEY as a person would type it again: the word given, or --key-hex HEX
 * (NUL-terminated); 0 or MOOR_ENOMEM. */
static int key_words(const cli_t *c, moor_buf_t *out)
{
    if (c->key_hex)
        return moor_buf_append(out, "--key-hex ", 10) ? MOOR_ENOMEM
                                                      : moor_cli_shell_quote(c->key_hex, out);
    return moor_cli_shell_quote(c->key, out);
}

/* With siblings, what they are and how to merge them (stderr). */
static void siblings_hint(const cli_t *c, const char *res, size_t rlen, uint32_t n)
{
    const char *vend, *ctx = map_field(res, rlen, "ctx", &vend);
    moor_buf_t key = MOOR_BUF_INIT, ctx_json = MOOR_BUF_INIT, space = MOOR_BUF_INIT;

    if (key_words(c, &key) ||
        (c->space &&
         (moor_buf_append(&space, " --space ", 9) || moor_cli_shell_quote(c->space, &space))) ||
        ((!ctx || moor_json_from_mp(&ctx, vend, 0, &ctx_json)) &&
         moor_buf_append(&ctx_json, "...", 3))) {
        fprintf(stderr, "%u siblings (concurrent writes)\n", n); /* out of memory */
    } else {
        fprintf(stderr,
                "%u siblings (concurrent writes). To merge: moor put %s VALUE%.*s --ctx '%.*s' "
                "writes one value over all of them, or configure a resolver for the space "
                "(README \"Resolvers\")\n",
                n, key.data, (int)space.len, space.data ? space.data : "", (int)ctx_json.len,
                ctx_json.data);
    }
    moor_buf_free(&key), moor_buf_free(&ctx_json), moor_buf_free(&space);
}

static int print_get(const cli_t *c, const char *res, size_t rlen)
{
    moor_buf_t text = MOOR_BUF_INIT;
    uint32_t n = 0;
    int rc;

    if (HAS(c, OPT_JSON)) {
        if ((rc = moor_show_get(res, rlen, &text)) == 0)
            rc = print_json(c, text.data, text.len);
        else
            fprintf(stderr, "moor: malformed answer\n"), rc = EXIT_TRANSPORT;
    } else {
        rc = print_text(c, moor_human_get(res, rlen, &text, &n), &text, res, rlen);
        if (rc == 0 && n > 1) {
            fflush(stdout);
            siblings_hint(c, res, rlen, n);
        }
    }
    moor_buf_free(&text);
    return rc;
}

/* get --out FILE: the one value's bytes (a str or bin as they are, any
 * other value as its JSON text) into FILE. */
static int print_out(const cli_t *c, const char *res, size_t rlen)
{
    const char *vend, *p = map_field(res, rlen, "values", &vend), *s;
    moor_buf_t json = MOOR_BUF_INIT, note = MOOR_BUF_INIT;
    msgpack_packer pk;
    uint32_t n = 0, sl;
    int rc = 0, written = 0;
    FILE *f;

    if (!p || moor_mp_read_array(&p, vend, &n) || n == 0) {
        fprintf(stderr, "moor: (not found): nothing written to %s\n", c->out);
        return 0;
    }
    if (n > 1) {
        fprintf(stderr,
                "moor: the key has %u siblings; --out writes one value (merge them "
                "first: moor get without --out shows how)\n",
                n);
        return EXIT_ERROR_REPLY;
    }
    if (moor_mp_read_strbin(&p, vend, &s, &sl)) {
        if (moor_json_from_mp(&p, vend, 0, &json))
            return print_json(c, res, rlen);
        s = json.data, sl = (uint32_t)json.len;
    }
    if ((f = fopen(c->out, "wb"))) {
        written = fwrite(s, 1, sl, f) == sl;
        written = fclose(f) == 0 && written;
    }
    moor_buf_free(&json);
    if (!written) {
        fprintf(stderr, "moor: --out %s: cannot write it: %s\n", c->out, strerror(errno));
        return EXIT_USAGE;
    }
    /* What was written, and the ctx to write back with. */
    moor_mp_packer_init(&pk, &note);
    p = map_field(res, rlen, "ctx", &vend);
    msgpack_pack_map(&pk, 2 + (p != NULL));
    pack_cstr(&pk, "file"), pack_cstr(&pk, c->out);
    pack_cstr(&pk, "bytes"), msgpack_pack_uint32(&pk, sl);
    if (p)
        pack_cstr(&pk, "ctx"), moor_buf_append(&note, p, (size_t)(vend - p));
    if (HAS(c, OPT_JSON)) {
        rc = print_json(c, note.data, note.len);
    } else {
        moor_buf_t text = MOOR_BUF_INIT;
        rc = print_text(c, moor_human_map(note.data, note.len, &text), &text, note.data, note.len);
        moor_buf_free(&text);
    }
    moor_buf_free(&note);
    return rc;
}

/* ring: the table (or JSON with --json, or if the answer is not shaped as
 * a ring answer). */
static int print_ring(const cli_t *c, const moor_client_reply_t *r)
{
    moor_buf_t text = MOOR_BUF_INIT;
    int rc;

    if (HAS(c, OPT_JSON) || moor_show_ring(r->result, r->rlen, &text))
        rc = print_json(c, r->result, r->rlen);
    else
        rc = fwrite(text.data, 1, text.len, stdout) == text.len ? 0 : EXIT_TRANSPORT;
    moor_buf_free(&text);
    return rc;
}

/* ping: "PONG n1" (the node that answered). */
static int print_ping(const cli_t *c, const char *res, size_t rlen)
{
    const char *vend, *p = map_field(res, rlen, "node", &vend), *s;
    uint32_t n;

    if (!p || moor_mp_read_str(&p, vend, &s, &n))
        return print_json(c, res, rlen);
    printf("PONG from %.*s\n", (int)n, s);
    return 0;
}

#define IS_KEY(k, kl, name) ((kl) == sizeof(name) - 1 && memcmp((k), (name), (kl)) == 0)

/* The strings of the array at p, each as fmt (one %.*s) to stdout; the
 * count, or -1 when it is not an array of strings. */
static long print_strs(const char *p, const char *end, const char *first, const char *fmt)
{
    uint32_t n, len;
    const char *s;

    if (moor_mp_read_array(&p, end, &n))
        return -1;
    for (uint32_t i = 0; i < n; i++) {
        if (moor_mp_read_str(&p, end, &s, &len))
            return -1;
        printf(i ? fmt : first, (int)len, s);
    }
    return n;
}

/* reload: "reloaded: N handlers, M resolvers; changed: a, b", then one
 * "warning: ..." line each (JSON with --json, or if the answer is not
 * shaped as a reload answer). */
static int print_reload(const cli_t *c, const moor_client_reply_t *r)
{
    const char *p = r->result, *end = r->result + r->rlen, *k, *v, *q;
    const char *changed = NULL, *warnings = NULL;
    uint64_t handlers = 0, resolvers = 0;
    uint32_t n, kl;

    if (HAS(c, OPT_JSON) || moor_mp_read_map(&p, end, &n))
        return print_json(c, r->result, r->rlen);
    while (n--) {
        if (moor_mp_read_str(&p, end, &k, &kl))
            return print_json(c, r->result, r->rlen);
        v = q = p;
        if (moor_mp_skip(&p, end, MOOR_MP_MAX_DEPTH))
            return print_json(c, r->result, r->rlen);
        if (IS_KEY(k, kl, "changed"))
            changed = v;
        else if (IS_KEY(k, kl, "warnings"))
            warnings = v;
        else if (IS_KEY(k, kl, "handlers"))
            moor_mp_read_uint(&q, end, &handlers);
        else if (IS_KEY(k, kl, "resolvers"))
            moor_mp_read_uint(&q, end, &resolvers);
    }
    printf("reloaded: %llu handlers, %llu resolvers; changed:", (unsigned long long)handlers,
           (unsigned long long)resolvers);
    if (!changed || print_strs(changed, end, " %.*s", ", %.*s") == 0)
        printf(" nothing");
    printf("\n");
    if (warnings)
        print_strs(warnings, end, "warning: %.*s\n", "warning: %.*s\n");
    return 0;
}

static int print_result(const cli_t *c, const moor_client_reply_t *r)
{
    moor_buf_t text = MOOR_BUF_INIT;
    int rc;

    if (IS(c, "get") && HAS(c, OPT_RAW | OPT_BIN) &&
        moor_mp_peek(r->result, r->result + r->rlen) == MOOR_MP_NIL) {
        fputs("(not found)\n", stderr); /* stdout stays the bytes: none */
        return 0;
    }
    if (IS(c, "get") && HAS(c, OPT_RAW | OPT_BIN))
        return print_raw_values(c, r->result, r->rlen);
    if (IS(c, "get") && c->out)
        return print_out(c, r->result, r->rlen);
    if (IS(c, "get"))
        return print_get(c, r->result, r->rlen);
    if (IS(c, "ring"))
        return print_ring(c, r);
    if (IS(c, "reload"))
        return print_reload(c, r);
    /* A handler's answer has no other form than its JSON. */
    if (HAS(c, OPT_JSON) || IS(c, "call"))
        return print_json(c, r->result, r->rlen);
    if (IS(c, "ping"))
        return print_ping(c, r->result, r->rlen);
    if (IS(c, "put") || IS(c, "del"))
        fputs(IS(c, "put") ? "OK\n" : "deleted\n", stdout);
    if ((IS(c, "put") || IS(c, "del")) &&
        moor_mp_peek(r->result, r->result + r->rlen) != MOOR_MP_MAP)
        return 0; /* del's `true` */
    rc = IS(c, "load") ? moor_human_table(r->result, r->rlen, "nodes", &text)
                       : moor_human_map(r->result, r->rlen, &text);
    rc = print_text(c, rc, &text, r->result, r->rlen);
    moor_buf_free(&text);
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

static int error_answer(const char *what, const moor_client_reply_t *r)
{
    fprintf(stderr, "moor: %s%s: %s\n", what, r->error_code, r->error_msg);
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
    return r.error_code ? error_answer("", &r) : 0;
}

/* put and del without --ctx or --blind: the key's ctx from a get, so that
 * the write replaces what is there.  A missing key leaves none. */
static int read_ctx(const cli_t *c, moor_client_t *cl, words_t *wd)
{
    moor_buf_t params = MOOR_BUF_INIT;
    moor_client_reply_t r;
    msgpack_packer pk;
    const char *vend, *p, *ctx;
    uint32_t n;
    int rc;

    moor_buf_append(&params, wd->key.data, wd->key.len);
    moor_mp_packer_init(&pk, &params);
    pack_opts(c, &pk, 1, NULL);
    rc = moor_client_call(cl, "get", params.data, params.len, 2, &r);
    moor_buf_free(&params);
    if (rc)
        return transport_failure("get (the read before the write)", rc);
    if (r.error_code)
        return error_answer("get (the read before the write; --blind skips it): ", &r);
    if ((p = map_field(r.result, r.rlen, "ctx", &vend)) &&
        moor_mp_read_bin(&p, vend, &ctx, &n) == 0) {
        if (moor_buf_append(&wd->ctx, ctx, n))
            return transport_failure("get", MOOR_ENOMEM);
        wd->have_ctx = 1;
    }
    return 0;
}

/* A put whose connection broke: a value past the node's frame limit
 * closes the connection instead of answering VALUE_TOO_LARGE. */
static int write_failure(const cli_t *c, const words_t *wd, int rc)
{
    int status = transport_failure(c->cmd->name, rc);

    if (IS(c, "put") && wd->value.len > ((size_t)16 << 20))
        fprintf(stderr,
                "moor: the value is %zu bytes: a node closes the connection on a "
                "request over its limits.max_frame_mb (values: limits.value_max_mb)\n",
                wd->value.len);
    return status;
}

static int run_command(const cli_t *c)
{
    moor_buf_t params = MOOR_BUF_INIT;
    words_t wd = {MOOR_BUF_INIT, MOOR_BUF_INIT, MOOR_BUF_INIT, 0};
    moor_client_t *cl = NULL;
    moor_client_reply_t r;
    uint32_t np = 0;
    int rc, status, c_timeout = c->timeout_ms;

    if ((status = read_words(c, &wd)))
        goto done;
    /* the node runs the config file under a 5 s budget (README "Hot
     * reload"): wait for its answer past that unless told otherwise */
    if (!strcmp(c->cmd->name, "reload") && !c->timeout_set && c->timeout_ms < RELOAD_TIMEOUT_MS)
        c_timeout = RELOAD_TIMEOUT_MS;
    if ((rc = moor_client_connect(c->addr, c_timeout, &cl))) {
        status = transport_failure("cannot connect", rc);
        goto done;
    }
    if (c->token && (status = authenticate(c, cl)))
        goto done;
    if ((IS(c, "put") || IS(c, "del")) && !HAS(c, OPT_BLIND) && !wd.have_ctx &&
        (status = read_ctx(c, cl, &wd)))
        goto done;
    if ((status = build_params(c, &wd, &params, &np)))
        goto done;
    if ((rc = moor_client_call(cl, c->cmd->name, params.data, params.len, np, &r)))
        status = write_failure(c, &wd, rc);
    else
        status = r.error_code ? error_answer("", &r) : print_result(c, &r);
done:
    moor_client_close(cl);
    moor_buf_free(&params);
    moor_buf_free(&wd.key), moor_buf_free(&wd.value), moor_buf_free(&wd.ctx);
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
    if (rc == 0 && sub_at && strcmp(argv[sub_at], "top") == 0)
        rc = moor_top_main(c.addr, c.token, c.timeout_ms, argc - sub_at, argv + sub_at);
    else if (rc == 0 && sub_at && strcmp(argv[sub_at], "scan") == 0)
        rc = moor_scan_main(c.addr, c.token, c.timeout_ms, argc - sub_at, argv + sub_at);
    else if (rc == 0 && sub_at && strcmp(argv[sub_at], "repair") == 0)
        rc =
            moor_repair_main(c.addr, c.token, c.timeout_ms, c.pretty, argc - sub_at, argv + sub_at);
    else if (rc == 0 && sub_at && strcmp(argv[sub_at], "slowlog") == 0)
        rc = moor_slowlog_main(c.addr, c.token, c.timeout_ms, c.pretty, argc - sub_at,
                               argv + sub_at);
    else if (rc == 0 && sub_at && strcmp(argv[sub_at], "snapshot") == 0)
        rc = moor_snapshot_main(c.addr, c.token, c.timeout_set ? c.timeout_ms : 0, c.pretty,
                                argc - sub_at, argv + sub_at);
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
