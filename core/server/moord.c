/*
 * moord.c -- the Moor node daemon: `moord CONFIG.lua`.
 *
 * Runs the Lua config (config as code, under the config budget), opens
 * the engine in data_dir, listens, and serves until SIGINT/SIGTERM (SIGHUP
 * runs the config again and takes it live: reload.h); then it stops
 * accepting, lets in-flight requests finish (their writes become durable
 * and are answered), flushes and closes the engine, and exits 0.  A bad
 * config (one past its budget too), an unwritable data_dir or a busy port
 * exits 2 with a message that names the problem.  --check validates the
 * config and checks its resolvers' laws (core/lua/laws.c): exit 0, or 1
 * when a resolver breaks one.  Everything runs on one libuv loop
 * (DESIGN.md "Threads").
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "lua/host.h"
#include "net/server.h"
#include "node.h"
#include "server/httpd.h"
#include "reload.h"
#include "server/resp.h"
#include "util/err.h"
#include "util/limits.h"
#include "util/log.h"

#ifndef MOOR_SOURCE_ROOT
#define MOOR_SOURCE_ROOT "."
#endif

typedef struct daemon {
    uv_loop_t *loop;
    moor_config_t cfg;
    moor_lua_t *lua;
    moor_node_t *node;
    moor_srv_t *srv;
    moor_srv_t *rsrv;    /* the RESP port (resp_listen), or NULL */
    moor_respd_t *respd; /* its commands */
    moor_httpd_t *httpd; /* the metrics and status port (http_listen), or NULL */
    int servers_running; /* servers not yet drained at stop */
    uv_signal_t sigint, sigterm, sighup;
    int stopping;
    moor_config_src_t src; /* the config file and moor.arg, for reloads */
    moor_reload_t reload;
} daemon_t;

static void usage(void)
{
    fprintf(stderr,
            "usage: moord CONFIG.lua [--node ID] [--set KEY=VALUE]... [--check] [--force-rejoin]\n"
            "  --node ID        moor.arg.node = ID for the config (one file for a cluster)\n"
            "  --set KEY=VALUE  moor.arg.KEY = VALUE (a string) for the config\n"
            "  --check          validate the config, check every resolver's laws and exit\n"
            "                   (0: valid and lawful, 1: a resolver breaks a law, 2: invalid)\n"
            "  --force-rejoin   start even though this node was down longer than the\n"
            "                   tombstone grace (reaped deletes may come back)\n"
            "  env MOOR_ROOT: directory holding lua/ and plugins/ (default: ../share/moor\n"
            "                 beside moord's directory when installed, else %s)\n"
            "  the config runs under a budget of %llu instructions and %u ms\n"
            "  signals: SIGINT/SIGTERM drain and stop; SIGHUP reloads the config\n"
            "           (as `moor reload`; the outcome is logged, the node keeps serving)\n",
            MOOR_SOURCE_ROOT, (unsigned long long)MOOR_LUA_CONFIG_INSTRUCTIONS,
            MOOR_LUA_CONFIG_TIMEOUT_MS);
}

/* Where lua/ and plugins/ are when MOOR_ROOT is not set.  An installed
 * moord (PREFIX/bin) has them in PREFIX/share/moor; looking beside the
 * executable rather than at a compiled-in prefix keeps a moved prefix
 * working (cmake --install --prefix).  A build-tree moord has no
 * ../share/moor/lua/moor/config.lua, so it keeps the source tree. */
static const char *default_root(char *buf, size_t size)
{
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    char *slash;
    struct stat st;

    if (n <= 0)
        return MOOR_SOURCE_ROOT;
    exe[n] = 0;
    if (!(slash = strrchr(exe, '/')))
        return MOOR_SOURCE_ROOT;
    *slash = 0;
    if ((size_t)snprintf(buf, size, "%s/../share/moor", exe) >= size)
        return MOOR_SOURCE_ROOT;
    char probe[4096 + 64];
    snprintf(probe, sizeof(probe), "%s/lua/moor/config.lua", buf);
    return stat(probe, &st) == 0 ? buf : MOOR_SOURCE_ROOT;
}

/* mkdir -p, then prove we can create files there. */
static int prepare_data_dir(const char *dir)
{
    char path[4096 + 32];
    int fd;

    snprintf(path, sizeof(path), "%s", dir);
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        mkdir(path, 0755);
        *p = '/';
    }
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        return moor_diag(-errno, "data_dir '%s' cannot be created: %s", dir, strerror(errno));
    snprintf(path, sizeof(path), "%s/.moor-write-test", dir);
    fd = open(path, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return moor_diag(-errno, "data_dir '%s' is not writable: %s", dir, strerror(errno));
    close(fd);
    unlink(path);
    return 0;
}

static void cluster_closed(void *ud)
{
    daemon_t *d = ud;
    int rc;

    moor_lua_free(d->lua);
    d->lua = NULL;
    moor_node_set_lua(d->node, NULL);
    rc = moor_node_close(d->node);
    if (rc)
        moor_log_error("closing the engine: %s (%s)", moor_err_name(rc), moor_diag_msg(rc));
    else
        moor_log_info("stopped cleanly");
    uv_close((uv_handle_t *)&d->sigint, NULL);
    uv_close((uv_handle_t *)&d->sigterm, NULL);
    uv_close((uv_handle_t *)&d->sighup, NULL);
}

/* Every server has drained: stop cluster work, then close the rest. */
static void closed_all(void *ud)
{
    daemon_t *d = ud;

    if (--d->servers_running > 0)
        return;
    moor_node_leave_cluster(d->node, cluster_closed, d);
}

static void on_signal(uv_signal_t *s, int signum)
{
    daemon_t *d = s->data;

    if (d->stopping) {
        moor_log_warn("second signal: exiting without draining");
        _exit(1);
    }
    d->stopping = 1;
    moor_log_info("signal %d: draining in-flight requests", signum);
    d->servers_running = d->rsrv ? 2 : 1;
    if (d->httpd) { /* nothing in flight there: it closes at once */
        d->servers_running++;
        moor_httpd_stop(d->httpd, closed_all, d);
        d->httpd = NULL;
    }
    if (d->rsrv)
        moor_srv_stop(d->rsrv, closed_all, d);
    moor_srv_stop(d->srv, closed_all, d);
}

/* SIGHUP: a reload, as the `reload` method runs it; moor_reload_run logs
 * the outcome.  Never stops the node. */
static void on_sighup(uv_signal_t *s, int signum)
{
    daemon_t *d = s->data;
    moor_buf_t reply = MOOR_BUF_INIT;

    (void)signum;
    if (d->stopping)
        return;
    moor_log_info("SIGHUP: reloading %s", d->src.path);
    moor_reload_run(&d->reload, &reply);
    moor_buf_free(&reply);
}

#define MAX_ARGS MOOR_RELOAD_MAX_ARGS

typedef struct config_arg {
    char key[64];
    const char *value;
} config_arg_t;

/* --node ID and --set KEY=VALUE into args (moor.arg for the config). */
static int force_rejoin; /* --force-rejoin */

static int parse_args(int argc, char **argv, const char **config, int *check, config_arg_t *args,
                      int *nargs)
{
    *config = NULL;
    *check = 0;
    *nargs = 0;
    for (int i = 1; i < argc; i++) {
        const char *kv = NULL, *eq;
        if (strcmp(argv[i], "--check") == 0) {
            *check = 1;
            continue;
        }
        if (strcmp(argv[i], "--force-rejoin") == 0) {
            force_rejoin = 1;
            continue;
        }
        if (strcmp(argv[i], "--node") == 0 && i + 1 < argc) {
            if (*nargs == MAX_ARGS)
                return 1;
            snprintf(args[*nargs].key, sizeof(args[0].key), "node");
            args[(*nargs)++].value = argv[++i];
            continue;
        }
        if (strcmp(argv[i], "--set") == 0 && i + 1 < argc)
            kv = argv[++i];
        if (kv) {
            eq = strchr(kv, '=');
            if (!eq || eq == kv || (size_t)(eq - kv) >= sizeof(args[0].key) || *nargs == MAX_ARGS)
                return 1;
            snprintf(args[*nargs].key, sizeof(args[0].key), "%.*s", (int)(eq - kv), kv);
            args[(*nargs)++].value = eq + 1;
            continue;
        }
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0 || *config)
            return 1;
        *config = argv[i];
    }
    return *config ? 0 : 1;
}

/* The RESP port: the same limits, auth and back-pressure as the
 * MessagePack port (so: its options), on the same loop. */
static int start_resp(daemon_t *d, const moor_srv_opts_t *msgpack_opts)
{
    moor_srv_opts_t so = *msgpack_opts;
    int rc;

    so.host = d->cfg.resp_host;
    so.port = d->cfg.resp_port;
    so.proto = MOOR_SRV_PROTO_RESP;
    so.max_bulk = d->cfg.value_max;
    so.peer_conns = 0; /* peers never speak RESP */
    so.peer_ip_ok = NULL;
    so.resp_class = moor_respd_class;
    moor_respd_set_node(d->respd, d->node);
    if ((rc = moor_srv_start(d->loop, &so, moor_respd_dispatch, d->respd, &d->rsrv)))
        return moor_diag_wrap(rc, rc, "resp_listen");
    moor_respd_set_server(d->respd, d->rsrv);
    printf("moord: node %s speaks RESP on %s:%d\n", d->cfg.node, d->cfg.resp_host,
           moor_srv_port(d->rsrv));
    moor_log_info("RESP listening on %s:%d", d->cfg.resp_host, moor_srv_port(d->rsrv));
    return 0;
}

/* What start() returns for --check (beside 0 and error codes). */
#define CHECKED_OK 1
#define CHECKED_LAWS_BROKEN 2

/* --check after a valid config: every resolver's laws (core/lua/laws.c),
 * one line each on stdout.  CHECKED_OK, CHECKED_LAWS_BROKEN, or an error
 * code when the check itself could not run. */
static int check_laws(daemon_t *d, const char *config)
{
    moor_buf_t report = MOOR_BUF_INIT;
    int rc;

    printf("moord: %s is valid (node %s, listen %s:%d)\n", config, d->cfg.node, d->cfg.listen_host,
           d->cfg.listen_port);
    rc = moor_lua_check_laws(d->lua, &report);
    fwrite(report.data ? report.data : "", 1, report.len, stdout);
    moor_buf_free(&report);
    if (rc == MOOR_EHANDLER) {
        printf("moord: %s\n", moor_diag_msg(rc));
        return CHECKED_LAWS_BROKEN;
    }
    return rc ? rc : CHECKED_OK;
}

static int start(daemon_t *d, const char *config, int check, const config_arg_t *args, int nargs)
{
    moor_srv_opts_t so;
    const char *root = getenv("MOOR_ROOT");
    static char installed[4096];
    int rc;

    d->src.loop = d->loop;
    d->src.path = config;
    d->src.root = root && *root ? root : default_root(installed, sizeof(installed));
    d->src.nargs = (unsigned)nargs;
    for (int i = 0; i < nargs; i++) {
        d->src.keys[i] = args[i].key;
        d->src.values[i] = args[i].value;
    }
    if ((rc = moor_config_load(&d->src, NULL, &d->lua, &d->cfg)))
        return rc;
    d->cfg.force_rejoin = force_rejoin;
    /* what an autoscale command gets as MOOR_CONFIG: usable from any cwd */
    if (!realpath(config, d->cfg.config_path))
        snprintf(d->cfg.config_path, sizeof(d->cfg.config_path), "%s", config);
    if ((rc = moor_respd_new(&d->cfg, &d->respd)))
        return rc;
    if (check)
        return check_laws(d, config);
    moor_log_set_level(d->cfg.log_level);
    moor_log_set_node(d->cfg.node);
    if (d->cfg.log_file[0]) {
        int fd = open(d->cfg.log_file, O_CREAT | O_WRONLY | O_APPEND | O_CLOEXEC, 0644);
        if (fd < 0)
            return moor_diag(-errno, "log.file '%s' cannot be opened: %s", d->cfg.log_file,
                             strerror(errno));
        moor_log_set_fd(fd);
    }
    if ((rc = prepare_data_dir(d->cfg.data_dir)))
        return rc;
    /* The engine stores records: room for the space prefix and siblings. */
    d->cfg.engine.key_max = d->cfg.key_max + 8 + 1 + 255;
    /* ... but never more than a client or a peer reads in one answer. */
    d->cfg.engine.value_max = d->cfg.value_max * 4 + (1u << 20);
    if (d->cfg.engine.value_max > MOOR_LIMIT_MAX_ANSWER - 65536)
        d->cfg.engine.value_max = MOOR_LIMIT_MAX_ANSWER - 65536;
    if ((rc = moor_node_open(d->loop, &d->cfg, &d->node)))
        return rc;
    moor_node_set_lua(d->node, d->lua);
    moor_lua_set_ops_ud(d->lua, d->node);
    moor_srv_opts_default(&so);
    so.host = d->cfg.listen_host;
    so.port = d->cfg.listen_port;
    moor_config_srv_limits(&d->cfg, &so);
    /* Every connection must authenticate when clients need a token; with
     * only a cluster secret, clients need not, so only peer slots do. */
    so.require_auth = d->cfg.auth_token[0] != '\0';
    so.peer_ip_ok = moor_node_peer_ip_ok;
    if ((rc = moor_srv_start(d->loop, &so, moor_node_dispatch, d->node, &d->srv)))
        return rc;
    moor_node_set_server(d->node, d->srv);
    if (d->cfg.resp_on && (rc = start_resp(d, &so)))
        return rc;
    if (d->cfg.http_on) {
        if ((rc = moor_httpd_start(d->loop, &d->cfg, d->node, &d->httpd)))
            return rc;
        printf("moord: node %s serves HTTP on %s:%d\n", d->cfg.node, d->cfg.http_host,
               moor_httpd_port(d->httpd));
        moor_log_info("HTTP (metrics, status) listening on %s:%d", d->cfg.http_host,
                      moor_httpd_port(d->httpd));
    }
    if (moor_config_clustered(&d->cfg)) {
        char self[160];
        const char *h = d->cfg.listen_host;
        snprintf(self, sizeof(self), strchr(h, ':') ? "[%s]:%d" : "%s:%d", h,
                 moor_srv_port(d->srv));
        if ((rc = moor_node_join_cluster(d->node, self)))
            return rc;
    }
    d->reload.src = &d->src;
    d->reload.cfg = &d->cfg;
    d->reload.lua = &d->lua;
    d->reload.node = d->node;
    d->reload.srv = d->srv;
    d->reload.rsrv = d->rsrv;
    moor_node_set_reload(d->node, moor_reload_run, &d->reload);
    uv_signal_init(d->loop, &d->sigint);
    uv_signal_init(d->loop, &d->sigterm);
    uv_signal_init(d->loop, &d->sighup);
    d->sigint.data = d->sigterm.data = d->sighup.data = d;
    uv_signal_start(&d->sigint, on_signal, SIGINT);
    uv_signal_start(&d->sigterm, on_signal, SIGTERM);
    uv_signal_start(&d->sighup, on_sighup, SIGHUP);
    printf("moord: node %s listening on %s:%d, data in %s%s\n", d->cfg.node, d->cfg.listen_host,
           moor_srv_port(d->srv), d->cfg.data_dir,
           moor_config_clustered(&d->cfg) ? " (cluster mode)" : "");
    fflush(stdout);
    moor_log_info("listening on %s:%d", d->cfg.listen_host, moor_srv_port(d->srv));
    return 0;
}

static void srv_stopped(void *ud)
{
    (void)ud; /* freed after the loop ends */
}

int main(int argc, char **argv)
{
    daemon_t d;
    const char *config;
    config_arg_t args[MAX_ARGS];
    int nargs;
    int check, rc;

    memset(&d, 0, sizeof(d));
    if (parse_args(argc, argv, &config, &check, args, &nargs)) {
        usage();
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    d.loop = uv_default_loop();
    rc = start(&d, config, check, args, nargs);
    if (rc == CHECKED_OK || rc == CHECKED_LAWS_BROKEN) { /* --check: 0, or 1 for a broken law */
        moor_lua_free(d.lua);
        moor_respd_free(d.respd);
        fflush(stdout);
        return rc == CHECKED_OK ? 0 : 1;
    }
    if (rc) {
        fprintf(stderr, "moord: %s\n", moor_diag_msg(rc));
        /* Close what was opened, so the exit is clean (sanitizers included):
         * the listener too, when the cluster was what failed. */
        if (d.srv)
            moor_srv_stop(d.srv, srv_stopped, NULL);
        if (d.rsrv)
            moor_srv_stop(d.rsrv, srv_stopped, NULL);
        if (d.httpd)
            moor_httpd_stop(d.httpd, NULL, NULL);
        if (d.node) {
            moor_node_set_lua(d.node, NULL);
            moor_node_leave_cluster(d.node, NULL, NULL);
            moor_node_close(d.node);
        }
        moor_lua_free(d.lua);
        uv_run(d.loop, UV_RUN_DEFAULT);
        if (d.srv)
            moor_srv_free(d.srv);
        if (d.rsrv)
            moor_srv_free(d.rsrv);
        moor_respd_free(d.respd);
        uv_loop_close(d.loop);
        return 2;
    }
    uv_run(d.loop, UV_RUN_DEFAULT);
    if (d.srv)
        moor_srv_free(d.srv);
    if (d.rsrv)
        moor_srv_free(d.rsrv);
    moor_respd_free(d.respd);
    uv_loop_close(d.loop);
    return 0;
}
