/*
 * autoscale.c -- load publishing and the scaling loop of a node
 * (autoscale.h).
 *
 * One timer drives everything: each tick rolls the load figures, hands
 * them to the cluster's load table, and on the evaluator maybe runs the
 * policy.  A change is a state machine: IDLE -> RUNNING (the command's
 * process is alive) -> SETTLING (it exited; waiting for the member table
 * to show the change and nobody joining or leaving) -> COOLING (until
 * settled + cooldown_s) -> IDLE.  The policy is only asked in IDLE, so
 * its own history restarts on the cluster as the change left it.
 */
#include "autoscale.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/load.h"
#include "cluster/membership.h"
#include "loadstat.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"
#include "util/mp.h"

extern char **environ;

enum { AS_IDLE = 0, AS_RUNNING, AS_SETTLING, AS_COOLING };

struct moor_as {
    uv_loop_t *loop;
    const moor_config_t *cfg;
    moor_engine_t *engine;
    moor_lua_t *lua; /* NULL: none (yet, or any more) */
    moor_cl_t *cl;   /* NULL: not in a cluster */
    uv_timer_t timer;
    uv_process_t proc; /* the command of the change under way */
    int proc_open;     /* proc is a live handle (until its close callback) */
    int handles;       /* open handles; freed at 0 once closing */
    int closing;
    moor_loadstat_t ls;
    moor_buf_t local; /* the last load map of this node */
    /* the scaling loop */
    int state;           /* AS_* */
    int evaluator;       /* this node evaluated at the last tick */
    uint64_t next_check; /* mono ms of the next policy call */
    uint64_t exited_at;  /* mono ms the command exited */
    uint64_t started_at; /* mono ms the command started */
    int signalled;       /* 0; 1 after SIGTERM, 2 after SIGKILL (it ran too long) */
    uint64_t cool_until; /* mono ms */
    char action[8];      /* of the change under way: "add" / "remove" */
    char target[MOOR_RING_ID_MAX + 1];
    uint32_t up_before;     /* up members when an add started */
    char last_decision[16]; /* "", "none", "add", "remove", "error" */
    char last_reason[256];
    uint64_t last_at_ms; /* wall clock of the last decision */
    uint64_t changes;    /* commands started */
};

/* ---- the member table ---------------------------------------------------------- */

static const moor_members_t *members(const moor_as_t *a)
{
    return a->cl ? moor_cl_members(a->cl) : NULL;
}

static int is_self(const moor_as_t *a, const char *id, size_t len)
{
    return strlen(a->cfg->node) == len && memcmp(a->cfg->node, id, len) == 0;
}

static int id_less(const char *a, size_t alen, const char *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);

    return c ? c < 0 : alen < blen;
}

/* This node is up and has the lowest id of the up members. */
static int evaluator(const moor_as_t *a)
{
    const moor_members_t *t = members(a);
    const moor_member_t *low = NULL;

    if (!t)
        return 0;
    for (uint32_t i = 0; i < t->n; i++) {
        const moor_member_t *m = &t->e[i].m;
        if (m->status == MOOR_MEMBER_UP && (!low || id_less(m->id, m->idlen, low->id, low->idlen)))
            low = m;
    }
    return low && is_self(a, low->id, low->idlen);
}

static void count_status(const moor_as_t *a, uint32_t *up, uint32_t *moving)
{
    const moor_members_t *t = members(a);

    *up = *moving = 0;
    for (uint32_t i = 0; t && i < t->n; i++) {
        int s = t->e[i].m.status;
        *up += s == MOOR_MEMBER_UP;
        *moving += s == MOOR_MEMBER_JOINING || s == MOOR_MEMBER_LEAVING;
    }
}

/* The largest n of the keyspaces; the default space (3 in a cluster)
 * counts even when the config does not declare it. */
static uint32_t largest_n(const moor_config_t *c)
{
    uint32_t best = 0, n, r, w;
    int has_default = 0;

    for (unsigned i = 0; i < c->nspaces; i++) {
        moor_config_levels(c, &c->spaces[i], &n, &r, &w);
        best = n > best ? n : best;
        has_default |= strcmp(c->spaces[i].name, "default") == 0;
    }
    if (!has_default) {
        n = moor_config_clustered(c) ? 3 : 1;
        best = n > best ? n : best;
    }
    return best;
}

/* ---- packing ------------------------------------------------------------------------- */

static void pack_str(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str_with_body(pk, s, strlen(s));
}

/* A member's map: id, status, addr, [age_ms], then either load = {map}
 * (nested) or the load map's own fields (flat: the `load` method). */
static int pack_member(const moor_as_t *a, const moor_member_t *m, int flat, msgpack_packer *pk,
                       moor_buf_t *out)
{
    moor_load_t *l = a->cl ? moor_cl_load(a->cl) : NULL;
    moor_load_view_t v;
    int have = l && moor_load_find(l, m->id, m->idlen, &v) && v.len > 0;
    const char *body = NULL;
    uint32_t nfields = 0;

    if (have) {
        body = v.load;
        if (moor_mp_read_map(&body, v.load + v.len, &nfields))
            have = 0;
    }
    msgpack_pack_map(pk, 3 + (have ? 1 + (flat ? nfields : 1) : 0));
    pack_str(pk, "id");
    msgpack_pack_str_with_body(pk, m->id, m->idlen);
    pack_str(pk, "status");
    pack_str(pk, moor_member_status_name(m->status));
    pack_str(pk, "addr");
    pack_str(pk, m->addr);
    if (!have)
        return 0;
    pack_str(pk, "age_ms");
    msgpack_pack_uint64(pk, v.age_ms);
    if (!flat)
        pack_str(pk, "load");
    /* the load map's bytes were checked when they entered the table */
    return moor_mp_pack_raw(out, flat ? body : v.load,
                            flat ? (size_t)(v.load + v.len - body) : v.len);
}

int moor_as_pack_cluster_load(moor_as_t *a, moor_buf_t *out)
{
    const moor_members_t *t = members(a);
    msgpack_packer pk;
    int rc = 0;

    moor_mp_packer_init(&pk, out);
    msgpack_pack_map(&pk, 1);
    pack_str(&pk, "nodes");
    if (!t) { /* alone: this node's own figures */
        const char *body = a->local.data;
        uint32_t nf = 0;
        msgpack_pack_array(&pk, 1);
        if (a->local.len == 0 || moor_mp_read_map(&body, a->local.data + a->local.len, &nf))
            nf = 0, body = NULL;
        char addr[128];
        snprintf(addr, sizeof(addr), strchr(a->cfg->listen_host, ':') ? "[%s]:%d" : "%s:%d",
                 a->cfg->listen_host, a->cfg->listen_port);
        msgpack_pack_map(&pk, 4 + nf);
        pack_str(&pk, "id");
        pack_str(&pk, a->cfg->node);
        pack_str(&pk, "status");
        pack_str(&pk, "up");
        pack_str(&pk, "addr");
        pack_str(&pk, addr);
        pack_str(&pk, "age_ms");
        msgpack_pack_uint64(&pk, 0);
        return body ? moor_mp_pack_raw(out, body, (size_t)(a->local.data + a->local.len - body))
                    : 0;
    }
    msgpack_pack_array(&pk, t->n);
    for (uint32_t i = 0; i < t->n && rc == 0; i++)
        rc = pack_member(a, &t->e[i].m, 1, &pk, out);
    return rc ? MOOR_ENOMEM : 0;
}

/* {nodes = [{id, status, addr, age_ms, load}], n, now_ms, self} */
static int pack_policy_input(moor_as_t *a, moor_buf_t *out)
{
    const moor_members_t *t = members(a);
    msgpack_packer pk;
    int rc = 0;

    moor_mp_packer_init(&pk, out);
    msgpack_pack_map(&pk, 4);
    pack_str(&pk, "nodes");
    msgpack_pack_array(&pk, t->n);
    for (uint32_t i = 0; i < t->n && rc == 0; i++)
        rc = pack_member(a, &t->e[i].m, 0, &pk, out);
    pack_str(&pk, "n");
    msgpack_pack_uint32(&pk, largest_n(a->cfg));
    pack_str(&pk, "now_ms");
    msgpack_pack_uint64(&pk, moor_clock_wall_ms());
    pack_str(&pk, "self");
    pack_str(&pk, a->cfg->node);
    return rc ? MOOR_ENOMEM : 0;
}

int moor_as_pack_load(moor_as_t *a, msgpack_packer *pk)
{
    moor_engine_stats_t es;

    moor_engine_stats(a->engine, &es);
    return moor_loadstat_pack(&a->ls, &es, a->cfg->engine.memtable_bytes, pk);
}

int moor_as_pack_info(const moor_as_t *a, msgpack_packer *pk)
{
    msgpack_pack_map(pk, 7);
    pack_str(pk, "enabled");
    a->cfg->autoscale ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
    pack_str(pk, "evaluator");
    a->evaluator ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
    pack_str(pk, "last_decision");
    a->last_decision[0] ? pack_str(pk, a->last_decision) : msgpack_pack_nil(pk);
    pack_str(pk, "last_reason");
    a->last_reason[0] ? pack_str(pk, a->last_reason) : msgpack_pack_nil(pk);
    pack_str(pk, "last_at_ms");
    msgpack_pack_uint64(pk, a->last_at_ms);
    pack_str(pk, "changes");
    msgpack_pack_uint64(pk, a->changes);
    pack_str(pk, "running");
    return a->state == AS_RUNNING || a->state == AS_SETTLING ? msgpack_pack_true(pk)
                                                             : msgpack_pack_false(pk);
}

/* ---- commands -------------------------------------------------------------------- */

static void maybe_free(moor_as_t *a)
{
    if (a->closing && a->handles == 0) {
        moor_buf_free(&a->local);
        free(a);
    }
}

static void handle_closed(uv_handle_t *h)
{
    moor_as_t *a = h->data;

    if (h == (uv_handle_t *)&a->proc)
        a->proc_open = 0;
    a->handles--;
    maybe_free(a);
}

static void proc_exited(uv_process_t *p, int64_t status, int signo)
{
    moor_as_t *a = p->data;

    if (signo)
        moor_log_warn("autoscale: the %s command was killed by signal %d", a->action, signo);
    else if (status)
        moor_log_warn("autoscale: the %s command exited %lld", a->action, (long long)status);
    else
        moor_log_info("autoscale: the %s command finished", a->action);
    uv_close((uv_handle_t *)p, handle_closed);
    if (a->closing)
        return;
    a->exited_at = moor_clock_mono_ms();
    if (signo || status) { /* nothing to wait for: try again after the cooldown */
        moor_log_warn("autoscale: the %s failed; next decision after the cooldown (%u s)",
                      a->action, a->cfg->as_cooldown_s);
        a->state = AS_COOLING;
        a->cool_until = a->exited_at + (uint64_t)a->cfg->as_cooldown_s * 1000;
        return;
    }
    a->state = AS_SETTLING;
}

/* "a:1,b:2" of the up members' addresses. */
static void seeds_of(const moor_as_t *a, char *out, size_t cap)
{
    const moor_members_t *t = members(a);
    size_t len = 0;

    out[0] = '\0';
    for (uint32_t i = 0; t && i < t->n; i++) {
        const moor_member_t *m = &t->e[i].m;
        int k;
        if (m->status != MOOR_MEMBER_UP)
            continue;
        k = snprintf(out + len, cap - len, "%s%s", len ? "," : "", m->addr);
        if (k < 0 || (size_t)k >= cap - len)
            break;
        len += (size_t)k;
    }
}

/* environ without MOOR_NODE/SEEDS/CONFIG/REASON, then ours; caller frees
 * the array (the strings are environ's and vars'). */
static char **make_env(char *vars[4])
{
    size_t n = 0, k = 0;
    char **env;

    while (environ[n])
        n++;
    if (!(env = calloc(n + 5, sizeof(*env))))
        return NULL;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "MOOR_NODE=", 10) && strncmp(environ[i], "MOOR_SEEDS=", 11) &&
            strncmp(environ[i], "MOOR_CONFIG=", 12) && strncmp(environ[i], "MOOR_REASON=", 12))
            env[k++] = environ[i];
    for (int i = 0; i < 4; i++)
        env[k++] = vars[i];
    env[k] = NULL;
    return env;
}

static int run_command(moor_as_t *a, const char *cmd, const char *node, const char *reason)
{
    static char seeds[8192];
    char v_node[96], v_seeds[8192 + 16], v_config[4096 + 16], v_reason[300];
    char *vars[4] = {v_node, v_seeds, v_config, v_reason};
    char *args[] = {"/bin/sh", "-c", (char *)cmd, NULL};
    uv_process_options_t po;
    uv_stdio_container_t io[3];
    char **env;
    int rc;

    seeds_of(a, seeds, sizeof(seeds));
    snprintf(v_node, sizeof(v_node), "MOOR_NODE=%s", node ? node : "");
    snprintf(v_seeds, sizeof(v_seeds), "MOOR_SEEDS=%s", seeds);
    snprintf(v_config, sizeof(v_config), "MOOR_CONFIG=%s", a->cfg->config_path);
    snprintf(v_reason, sizeof(v_reason), "MOOR_REASON=%s", reason ? reason : "");
    if (!(env = make_env(vars)))
        return MOOR_ENOMEM;
    memset(&po, 0, sizeof(po));
    io[0].flags = UV_IGNORE;
    io[1].flags = UV_INHERIT_FD; /* the command's output goes where the node's stderr goes */
    io[1].data.fd = 2;
    io[2].flags = UV_INHERIT_FD;
    io[2].data.fd = 2;
    po.file = "/bin/sh";
    po.args = args;
    po.env = env;
    po.stdio = io;
    po.stdio_count = 3;
    po.exit_cb = proc_exited;
    a->proc.data = a;
    rc = uv_spawn(a->loop, &a->proc, &po);
    free(env);
    if (rc) {
        /* libuv leaves an initialised handle behind on failure: close it */
        a->proc_open = 1;
        a->handles++;
        uv_close((uv_handle_t *)&a->proc, handle_closed);
        return moor_diag(rc, "cannot start '%s': %s", cmd, uv_strerror(rc));
    }
    a->proc_open = 1;
    a->handles++;
    return 0;
}

/* ---- the policy -------------------------------------------------------------------- */

typedef struct decision {
    char action[8];
    char node[MOOR_RING_ID_MAX + 1];
    char reason[256];
} decision_t;

static void copy_span(char *dst, size_t cap, const char *s, uint32_t n)
{
    if (n >= cap)
        n = (uint32_t)cap - 1;
    memcpy(dst, s, n);
    dst[n] = '\0';
    for (uint32_t i = 0; i < n; i++) /* one log line */
        if (dst[i] == '\n' || dst[i] == '\r')
            dst[i] = ' ';
}

/* {action, [node], [reason]} as lua/moor/autoscale.lua normalize gives it. */
static int read_decision(const char *p, const char *end, decision_t *d)
{
    uint32_t n, klen, vlen;
    const char *k, *v;

    memset(d, 0, sizeof(*d));
    if (moor_mp_read_map(&p, end, &n))
        return moor_diag(MOOR_EINVAL, "the policy's answer is not a map");
    while (n--) {
        if (moor_mp_read_str(&p, end, &k, &klen))
            return moor_diag(MOOR_EINVAL, "the policy's answer has a key that is not a string");
        if (moor_mp_peek(p, end) != MOOR_MP_STR) {
            if (moor_mp_skip(&p, end, MOOR_MP_MAX_DEPTH))
                return moor_diag(MOOR_EINVAL, "the policy's answer is malformed");
            continue;
        }
        moor_mp_read_str(&p, end, &v, &vlen);
        if (klen == 6 && memcmp(k, "action", 6) == 0)
            copy_span(d->action, sizeof(d->action), v, vlen);
        else if (klen == 4 && memcmp(k, "node", 4) == 0) {
            if (vlen == 0 || vlen > MOOR_RING_ID_MAX)
                return moor_diag(MOOR_EINVAL, "the policy named a node id of %u bytes", vlen);
            copy_span(d->node, sizeof(d->node), v, vlen);
        } else if (klen == 6 && memcmp(k, "reason", 6) == 0)
            copy_span(d->reason, sizeof(d->reason), v, vlen);
    }
    if (strcmp(d->action, "none") && strcmp(d->action, "add") &&
        !(strcmp(d->action, "remove") == 0 && d->node[0]))
        return moor_diag(MOOR_EINVAL, "the policy's answer has no valid action");
    return 0;
}

static int ask_policy(moor_as_t *a, decision_t *d)
{
    moor_buf_t in = MOOR_BUF_INIT, out = MOOR_BUF_INIT;
    int rc;

    if (!a->lua)
        return moor_diag(MOOR_ECLOSED, "no Lua host");
    if ((rc = pack_policy_input(a, &in)) == 0 &&
        (rc = moor_lua_resolve(a->lua, MOOR_AS_POLICY, strlen(MOOR_AS_POLICY), in.data, in.len,
                               &out)) == 0)
        rc = read_decision(out.data, out.data + out.len, d);
    moor_buf_free(&in);
    moor_buf_free(&out);
    return rc;
}

static void note(moor_as_t *a, const char *decision, const char *reason)
{
    snprintf(a->last_decision, sizeof(a->last_decision), "%s", decision);
    snprintf(a->last_reason, sizeof(a->last_reason), "%s", reason ? reason : "");
    a->last_at_ms = moor_clock_wall_ms();
}

/* A member that is known and not gone. */
static int still_there(const moor_as_t *a, const char *id)
{
    const moor_members_t *t = members(a);
    const moor_member_entry_t *e = t ? moor_members_find(t, id, strlen(id)) : NULL;

    return e && e->m.status != MOOR_MEMBER_LEFT && e->m.status != MOOR_MEMBER_DOWN;
}

static void act(moor_as_t *a, const decision_t *d)
{
    const char *cmd = strcmp(d->action, "add") == 0 ? a->cfg->as_add : a->cfg->as_remove;
    uint32_t up, moving;
    int rc;

    if (!cmd[0]) {
        moor_log_warn("autoscale: the policy answered %s (%s) but no %s command is configured",
                      d->action, d->reason, d->action);
        return;
    }
    if (strcmp(d->action, "remove") == 0 && !still_there(a, d->node)) {
        moor_log_warn("autoscale: the policy asked to remove '%s', which is not a member that "
                      "is up; nothing done",
                      d->node);
        return;
    }
    count_status(a, &up, &moving);
    snprintf(a->action, sizeof(a->action), "%s", d->action);
    snprintf(a->target, sizeof(a->target), "%s", d->node);
    a->up_before = up;
    if ((rc = run_command(a, cmd, d->node[0] ? d->node : NULL, d->reason))) {
        moor_log_error("autoscale: %s: %s", d->action, moor_diag_msg(rc));
        return;
    }
    a->changes++;
    a->state = AS_RUNNING;
    a->started_at = moor_clock_mono_ms();
    a->signalled = 0;
    moor_log_info("autoscale: started the %s command%s%s", d->action, d->node[0] ? " for " : "",
                  d->node);
}

static void evaluate(moor_as_t *a)
{
    decision_t d;
    int rc = ask_policy(a, &d);

    if (rc) {
        note(a, "error", moor_diag_msg(rc));
        moor_log_warn("autoscale: the policy failed: %s", moor_diag_msg(rc));
        return;
    }
    note(a, d.action, d.reason);
    if (strcmp(d.action, "none") == 0) {
        moor_log_debug("autoscale: none (%s)", d.reason);
        return;
    }
    moor_log_info("autoscale: decision %s%s%s: %s", d.action, d.node[0] ? " " : "", d.node,
                  d.reason[0] ? d.reason : "(no reason given)");
    act(a, &d);
}

/* SETTLING -> COOLING once the member table shows the change and nobody
 * joins or leaves (or MOOR_AS_SETTLE_MAX_MS after the command exited). */
static void settle(moor_as_t *a, uint64_t now)
{
    uint32_t up, moving;
    int shown;

    count_status(a, &up, &moving);
    shown = strcmp(a->action, "add") == 0 ? up > a->up_before : !still_there(a, a->target);
    if (now - a->exited_at < MOOR_AS_SETTLE_MAX_MS && (moving || !shown))
        return;
    if (moving || !shown)
        moor_log_warn("autoscale: the %s did not show in the member table within %u s; "
                      "cooling down anyway",
                      a->action, MOOR_AS_SETTLE_MAX_MS / 1000);
    else
        moor_log_info("autoscale: the %s settled (%u member(s) up); cooling down %u s", a->action,
                      up, a->cfg->as_cooldown_s);
    a->state = AS_COOLING;
    a->cool_until = now + (uint64_t)a->cfg->as_cooldown_s * 1000;
}

static void scale_tick(moor_as_t *a, uint64_t now)
{
    if (a->state == AS_RUNNING && now - a->started_at > MOOR_AS_COMMAND_MAX_MS &&
        a->signalled < 2 && now - a->started_at > MOOR_AS_COMMAND_MAX_MS + 10000 * a->signalled) {
        /* a command that hangs must not stop scaling for good: TERM, then
         * KILL 10 s later; its exit then cools down as a failure does */
        moor_log_warn("autoscale: the %s command has run for %llu s; sending it %s", a->action,
                      (unsigned long long)((now - a->started_at) / 1000),
                      a->signalled ? "SIGKILL" : "SIGTERM");
        uv_process_kill(&a->proc, a->signalled ? SIGKILL : SIGTERM);
        a->signalled++;
    }
    if (a->state == AS_SETTLING)
        settle(a, now);
    if (a->state == AS_COOLING && now >= a->cool_until)
        a->state = AS_IDLE;
    a->evaluator = evaluator(a);
    if (!a->evaluator || a->state != AS_IDLE || now < a->next_check)
        return;
    a->next_check = now + (uint64_t)a->cfg->as_check_s * 1000 - MOOR_AS_TICK_MS / 2;
    evaluate(a);
}

/* ---- the tick ------------------------------------------------------------------------ */

static void tick(uv_timer_t *t)
{
    moor_as_t *a = t->data;
    moor_engine_stats_t es;
    msgpack_packer pk;
    uint64_t now = moor_clock_mono_ms();

    moor_engine_stats(a->engine, &es);
    moor_loadstat_roll(&a->ls, now, moor_loadstat_thread_cpu_us(), &es);
    moor_buf_reset(&a->local);
    moor_mp_packer_init(&pk, &a->local);
    if (moor_loadstat_pack(&a->ls, &es, a->cfg->engine.memtable_bytes, &pk) == 0 && a->cl &&
        moor_cl_load(a->cl))
        moor_load_set_local(moor_cl_load(a->cl), a->local.data, a->local.len);
    if (a->cfg->autoscale && a->cl)
        scale_tick(a, now);
}

/* ---- API ---------------------------------------------------------------------------- */

int moor_as_new(uv_loop_t *loop, const moor_config_t *cfg, moor_engine_t *engine, moor_as_t **out)
{
    moor_as_t *a = calloc(1, sizeof(*a));
    moor_engine_stats_t es;

    *out = NULL;
    if (!a)
        return MOOR_ENOMEM;
    a->loop = loop;
    a->cfg = cfg;
    a->engine = engine;
    moor_engine_stats(engine, &es);
    moor_loadstat_roll(&a->ls, moor_clock_mono_ms(), moor_loadstat_thread_cpu_us(), &es);
    uv_timer_init(loop, &a->timer);
    a->timer.data = a;
    a->handles = 1;
    uv_timer_start(&a->timer, tick, MOOR_AS_TICK_MS, MOOR_AS_TICK_MS);
    uv_unref((uv_handle_t *)&a->timer); /* never keeps the loop alive alone */
    if (cfg->autoscale && !moor_config_clustered(cfg))
        moor_log_warn("autoscale: moor.autoscale{} has no effect on a node without seeds "
                      "(only a cluster scales)");
    *out = a;
    return 0;
}

void moor_as_set_lua(moor_as_t *a, moor_lua_t *L)
{
    a->lua = L;
}

void moor_as_set_cluster(moor_as_t *a, moor_cl_t *cl)
{
    a->cl = cl;
    if (cl && a->cfg->autoscale)
        moor_log_info("autoscale: on (check every %u s, cooldown %u s); the lowest id that is up "
                      "evaluates",
                      a->cfg->as_check_s, a->cfg->as_cooldown_s);
}

void moor_as_request(moor_as_t *a, int kind, uint64_t t0_ns)
{
    uint64_t now = uv_hrtime();

    moor_loadstat_record(&a->ls, kind, now > t0_ns ? (now - t0_ns) / 1000 : 0);
}

void moor_as_close(moor_as_t *a)
{
    if (!a)
        return;
    a->closing = 1;
    a->cl = NULL;
    a->lua = NULL;
    uv_timer_stop(&a->timer);
    uv_close((uv_handle_t *)&a->timer, handle_closed);
    /* a command still running runs on (a scaler half-way through starting
     * a node is better finished); its exit is no longer watched */
    if (a->proc_open && !uv_is_closing((uv_handle_t *)&a->proc))
        uv_close((uv_handle_t *)&a->proc, handle_closed);
}
