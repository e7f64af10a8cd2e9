/*
 * host.c -- the LuaJIT host: one Lua state on the loop thread that runs
 * the config file, the handlers (in coroutines) and the resolvers.
 *
 * Handlers follow the cosocket pattern (OpenResty): moor.get/put/del are
 * classic lua_CFunctions that encode their request, hand it to the node
 * through ops.kv with a token and lua_yield; moor_lua_kv_done(token)
 * pushes the answer onto the suspended coroutine and resumes it.  The node
 * may answer from inside ops.kv (a read served from memory): the answer is
 * then stashed and returned without yielding.
 *
 * Tokens: a call lives in a slot of h->slots; a token is (generation << 32
 * | slot + 1) and every kv bumps the slot's generation, so an answer for an
 * abandoned call (or an older kv) never matches and is ignored.
 *
 * Budgets: the state runs with the JIT off.  LuaJIT's count hook is not
 * called from compiled traces, so a `while true do end` compiled into a
 * trace would never be stopped; switching the JIT off for the whole state
 * (rather than jit.off on each handler) also covers helper functions and
 * modules a handler calls.  The count hook is installed only while a
 * handler or resolver runs; every HOOK_GRAIN instructions it charges the
 * running budget and checks the wall-clock deadline.  Once over, it raises
 * on every instruction so a pcall inside the handler cannot swallow the
 * stop.  A libuv timer per call enforces the wall clock while the handler
 * waits on kv: the coroutine is abandoned, HANDLER_TIMEOUT goes out, and
 * the late answer is ignored.  Hooks are global to a LuaJIT state, so the
 * running budget is a thread-local pointer saved and restored around
 * nested runs.
 *
 * Errors: a Lua error in a handler gives HANDLER_ERROR with the message
 * and the top of the traceback.  Messages say how many writes the handler
 * completed, and whether one was in flight, so nothing half-applied goes
 * unsaid.  An out-of-memory error inside the VM is fatal (panic handler
 * logs and aborts): the host has no safe way to continue without memory.
 *
 * Threads: everything here runs on the loop thread.
 */
#include "host.h"

#include <lauxlib.h>
#include <luajit.h>
#include <lualib.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "lua_internal.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"

#define HOOK_GRAIN 1000
#define MAX_CALL_ARGS 200
#define CONFIG_TIMEOUT_MS 30000
#define NO_SLOT UINT32_MAX

enum { OVER_NONE = 0, OVER_INSTR = 1, OVER_TIME = 2 };

typedef struct budget {
    uint64_t limit;       /* instructions */
    uint64_t used;        /* charged by the hook, HOOK_GRAIN at a time */
    uint64_t deadline_ms; /* monotonic */
    unsigned timeout_ms;  /* for messages */
    int over;             /* OVER_*: once set, every instruction raises */
} budget_t;

typedef struct call {
    moor_lua_t *h;
    lua_State *co; /* the handler's coroutine */
    int co_ref;    /* registry ref keeping co alive */
    uint32_t slot;
    uint64_t token; /* kv waited on; 0 = not waiting */
    int op;         /* that kv's op */
    int in_kv;      /* inside ops.kv: an answer now is synchronous */
    int sync_done;  /* it came: stashed below */
    char *s_errcode, *s_errmsg;
    moor_buf_t s_result;
    moor_buf_t buf; /* request params, then the encoded reply */
    budget_t budget;
    unsigned writes;  /* puts/dels acknowledged */
    char name[64];    /* handler name, for messages */
    char msg[1024];   /* error message of the reply */
    uv_timer_t timer; /* wall-clock budget; closing frees the call */
    moor_lua_reply_fn reply;
    void *ud;
} call_t;

typedef struct slot {
    call_t *c;     /* NULL when free */
    uint32_t gen;  /* bumped by every kv issued from this slot */
    uint32_t next; /* free list */
} slot_t;

struct moor_lua {
    lua_State *L;
    uv_loop_t *loop;
    moor_lua_ops_t ops;
    char root[4096];
    int env_ref, moor_ref;           /* sandbox environment, moor table */
    int handlers_ref, resolvers_ref; /* from the config; LUA_NOREF before */
    int config_ref;                  /* the whole validated config table (gossip, seeds: issue 4) */
    slot_t *slots;
    uint32_t nslots, free_head;
    unsigned inflight;
    call_t *running; /* call being resumed now, or NULL */
    uint64_t def_instructions;
    unsigned def_timeout_ms;
    int closing;
};

static _Thread_local budget_t *cur_budget;

static const char *const op_names[] = {"", "moor.get", "moor.put", "moor.del"};

/* ---- budgets ------------------------------------------------------------------ */

static void count_hook(lua_State *L, lua_Debug *ar)
{
    budget_t *b = cur_budget;

    (void)ar;
    if (!b)
        return;
    if (!b->over) {
        b->used += HOOK_GRAIN;
        if (b->used > b->limit)
            b->over = OVER_INSTR;
        else if (moor_clock_mono_ms() > b->deadline_ms)
            b->over = OVER_TIME;
        if (!b->over)
            return;
        lua_sethook(L, count_hook, LUA_MASKCOUNT, 1);
    }
    luaL_error(L, "stopped: over its %s budget", b->over == OVER_INSTR ? "instruction" : "time");
}

static budget_t *budget_enter(lua_State *L, budget_t *b)
{
    budget_t *prev = cur_budget;

    cur_budget = b;
    lua_sethook(L, count_hook, LUA_MASKCOUNT, b->over ? 1 : HOOK_GRAIN);
    return prev;
}

static void budget_leave(lua_State *L, budget_t *prev)
{
    cur_budget = prev;
    if (prev)
        lua_sethook(L, count_hook, LUA_MASKCOUNT, prev->over ? 1 : HOOK_GRAIN);
    else
        lua_sethook(L, NULL, 0, 0);
}

static void budget_init(budget_t *b, uint64_t instructions, unsigned timeout_ms)
{
    memset(b, 0, sizeof(*b));
    b->limit = instructions;
    b->timeout_ms = timeout_ms;
    b->deadline_ms = moor_clock_mono_ms() + timeout_ms;
}

/* ---- slots and tokens ------------------------------------------------------------ */

static int slot_alloc(moor_lua_t *h, call_t *c)
{
    uint32_t i;

    if (h->free_head == NO_SLOT) {
        uint32_t n = h->nslots ? h->nslots * 2 : 64;
        slot_t *s = realloc(h->slots, n * sizeof(*s));
        if (!s)
            return MOOR_ENOMEM;
        for (i = h->nslots; i < n; i++) {
            s[i].c = NULL;
            s[i].gen = 0;
            s[i].next = i + 1 < n ? i + 1 : NO_SLOT;
        }
        h->free_head = h->nslots;
        h->slots = s;
        h->nslots = n;
    }
    i = h->free_head;
    h->free_head = h->slots[i].next;
    h->slots[i].c = c;
    c->slot = i;
    return 0;
}

static void slot_free(moor_lua_t *h, call_t *c)
{
    slot_t *s = &h->slots[c->slot];

    s->c = NULL;
    s->gen++;
    s->next = h->free_head;
    h->free_head = c->slot;
}

static uint64_t token_issue(moor_lua_t *h, call_t *c)
{
    slot_t *s = &h->slots[c->slot];

    s->gen++;
    return ((uint64_t)s->gen << 32) | ((uint64_t)c->slot + 1);
}

static call_t *token_find(moor_lua_t *h, uint64_t token)
{
    uint32_t idx = (uint32_t)token - 1, gen = (uint32_t)(token >> 32);

    if ((uint32_t)token == 0 || idx >= h->nslots)
        return NULL;
    if (!h->slots[idx].c || h->slots[idx].gen != gen || h->slots[idx].c->token != token)
        return NULL;
    return h->slots[idx].c;
}

/* ---- finishing a call -------------------------------------------------------- */

static void call_free_cb(uv_handle_t *t)
{
    call_t *c = t->data;

    moor_buf_free(&c->buf);
    moor_buf_free(&c->s_result);
    free(c->s_errcode);
    free(c->s_errmsg);
    free(c);
}

/* Answers the caller once and releases everything; the call's memory goes
 * in the timer's close callback, so errmsg/result may point into it. */
static void call_finish(call_t *c, const char *errcode, const char *errmsg, const char *res,
                        size_t rlen)
{
    moor_lua_t *h = c->h;
    moor_lua_reply_fn reply = c->reply;
    void *ud = c->ud;

    slot_free(h, c);
    h->inflight--;
    c->token = 0;
    luaL_unref(h->L, LUA_REGISTRYINDEX, c->co_ref);
    c->co = NULL;
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, call_free_cb);
    reply(ud, errcode, errmsg, res, rlen);
}

static void call_fail(call_t *c, const char *errcode, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void call_fail(call_t *c, const char *errcode, const char *fmt, ...)
{
    va_list ap;
    size_t n;

    va_start(ap, fmt);
    vsnprintf(c->msg, sizeof(c->msg), fmt, ap);
    va_end(ap);
    n = strlen(c->msg);
    if (c->writes && n < sizeof(c->msg))
        snprintf(c->msg + n, sizeof(c->msg) - n, " (%u write%s completed before it stopped)",
                 c->writes, c->writes == 1 ? "" : "s");
    call_finish(c, errcode, c->msg, NULL, 0);
}

static void call_timeout_msg(call_t *c, const char *waiting)
{
    if (c->budget.over == OVER_INSTR)
        call_fail(c, "HANDLER_TIMEOUT",
                  "handler '%s' stopped: over its budget of %llu instructions", c->name,
                  (unsigned long long)c->budget.limit);
    else
        call_fail(c, "HANDLER_TIMEOUT", "handler '%s' stopped: over its time budget of %u ms%s",
                  c->name, c->budget.timeout_ms, waiting ? waiting : "");
}

/* The handler returned: encode its first result. */
static void call_complete(call_t *c)
{
    lua_State *co = c->co;
    int rc;

    if (lua_gettop(co) == 0)
        lua_pushnil(co);
    moor_buf_reset(&c->buf);
    rc = moor_codec_encode(co, 1, 0, &c->buf);
    if (rc) {
        call_fail(c, "HANDLER_ERROR", "handler '%s' returned a value that cannot be encoded: %s",
                  c->name, moor_diag_msg(rc));
        return;
    }
    call_finish(c, NULL, NULL, c->buf.data, c->buf.len);
}

/* The handler raised: its message plus the first lines of the traceback. */
static void call_error(call_t *c)
{
    lua_State *co = c->co;
    const char *msg = lua_tostring(co, -1);
    const char *tb;
    char line[512] = "";

    if (c->budget.over) {
        call_timeout_msg(c, NULL);
        return;
    }
    if (!msg)
        msg = lua_isnil(co, -1) ? "nil error" : lua_typename(co, lua_type(co, -1));
    luaL_traceback(co, co, NULL, 0);
    tb = lua_tostring(co, -1);
    /* "stack traceback:\n\t[C]: in ...\n\tfile:line: in ..." -> the first
     * Lua frame, where the error was raised */
    for (const char *p = tb ? strchr(tb, '\n') : NULL; p && *p; p = strchr(p, '\n')) {
        p += strspn(p, "\n\t");
        if (*p && strncmp(p, "[C]", 3) != 0) {
            snprintf(line, sizeof(line), " (at %.*s)", (int)strcspn(p, "\n"), p);
            break;
        }
    }
    call_fail(c, "HANDLER_ERROR", "handler '%s': %s%s", c->name, msg, line);
}

static void call_run(call_t *c, int nargs)
{
    moor_lua_t *h = c->h;
    call_t *prev = h->running;
    budget_t *pb;
    int st;

    h->running = c;
    pb = budget_enter(c->co, &c->budget);
    st = lua_resume(c->co, nargs);
    budget_leave(c->co, pb);
    h->running = prev;
    if (st == LUA_YIELD && c->token)
        return; /* waiting on kv */
    if (c->budget.over)
        call_timeout_msg(c, NULL);
    else if (st == LUA_YIELD)
        call_fail(c, "HANDLER_ERROR", "handler '%s' yielded outside moor.get/put/del", c->name);
    else if (st == 0)
        call_complete(c);
    else
        call_error(c);
}

static void on_timer(uv_timer_t *t)
{
    call_t *c = t->data;
    char waiting[128] = "";
    static const char *const what[] = {"", "a get", "a put", "a del"};

    c->budget.over = OVER_TIME;
    if (c->token)
        snprintf(waiting, sizeof(waiting), " while waiting on %s%s", what[c->op],
                 c->op != MOOR_LUA_GET ? " (which may or may not be applied)" : "");
    call_timeout_msg(c, waiting);
}

/* ---- moor.get / put / del (the cosocket functions) ------------------------------ */

/* Pushes the Lua results of a kv answer onto L; returns how many. */
static int push_kv_result(lua_State *L, call_t *c, const char *errcode, const char *errmsg,
                          const char *res, size_t rlen)
{
    const char *p = res;
    int rc;

    lua_checkstack(L, 4);
    if (errcode) {
        lua_pushnil(L);
        lua_pushfstring(L, "%s: %s", errcode, errmsg ? errmsg : "");
        return 2;
    }
    if (!res || rlen == 0 || (rlen == 1 && (unsigned char)res[0] == 0xc0)) {
        if (c->op == MOOR_LUA_GET) { /* not found: nil, nil */
            lua_pushnil(L);
            lua_pushnil(L);
            return 2;
        }
        c->writes++;
        lua_pushboolean(L, 1);
        return 1;
    }
    rc = moor_codec_decode(L, &p, res + rlen);
    if (rc) {
        lua_pushnil(L);
        lua_pushfstring(L, "BAD_REPLY: %s", moor_diag_msg(rc));
        return 2;
    }
    if (c->op != MOOR_LUA_GET)
        c->writes++;
    return 1;
}

static int kv_encode(lua_State *L, call_t *c, int op, uint32_t *np)
{
    int nfixed = op == MOOR_LUA_PUT ? 2 : 1, rc;

    moor_buf_reset(&c->buf);
    for (int i = 1; i <= nfixed; i++) {
        luaL_checkany(L, i);
        if ((rc = moor_codec_encode(L, i, 0, &c->buf)))
            return luaL_error(L, "%s: %s %s", op_names[op],
                              i == 1 ? "key:" : "value:", moor_diag_msg(rc));
    }
    *np = (uint32_t)nfixed;
    if (!lua_isnoneornil(L, nfixed + 1)) {
        luaL_checktype(L, nfixed + 1, LUA_TTABLE);
        if ((rc = moor_codec_encode(L, nfixed + 1, 1, &c->buf)))
            return luaL_error(L, "%s: opts: %s", op_names[op], moor_diag_msg(rc));
        (*np)++;
    }
    return 0;
}

/* Upvalues: 1 = the host, 2 = the op. */
static int l_kv(lua_State *L)
{
    moor_lua_t *h = lua_touserdata(L, lua_upvalueindex(1));
    int op = (int)lua_tointeger(L, lua_upvalueindex(2)), rc, n;
    call_t *c = h->running;
    uint32_t np = 0;

    if (!c || c->co != L || c->in_kv)
        return luaL_error(L, "%s can only be called from a handler", op_names[op]);
    kv_encode(L, c, op, &np);
    c->op = op;
    c->token = token_issue(h, c);
    c->in_kv = 1;
    c->sync_done = 0;
    rc = h->ops.kv(h->ops.ud, op, c->buf.data, c->buf.len, np, c->token);
    c->in_kv = 0;
    if (rc) {
        c->token = 0;
        lua_pushnil(L);
        lua_pushfstring(L, "%s: %s", moor_err_name(rc), moor_diag_msg(rc));
        return 2;
    }
    if (!c->sync_done)
        return lua_yield(L, 0);
    n = push_kv_result(L, c, c->s_errcode, c->s_errmsg, c->s_result.data, c->s_result.len);
    free(c->s_errcode);
    free(c->s_errmsg);
    c->s_errcode = c->s_errmsg = NULL;
    moor_buf_reset(&c->s_result);
    return n;
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

void moor_lua_kv_done(moor_lua_t *h, uint64_t token, const char *errcode, const char *errmsg,
                      const char *result, size_t rlen)
{
    call_t *c = token_find(h, token);
    int n;

    if (!c)
        return; /* abandoned (timed out) or unknown: ignored */
    c->token = 0;
    if (c->in_kv) {
        c->sync_done = 1;
        c->s_errcode = dup_or_null(errcode);
        c->s_errmsg = dup_or_null(errmsg);
        moor_buf_reset(&c->s_result);
        if ((errcode && !c->s_errcode) || (result && moor_buf_append(&c->s_result, result, rlen))) {
            free(c->s_errcode);
            c->s_errcode = strdup("OUT_OF_MEMORY");
        }
        return;
    }
    n = push_kv_result(c->co, c, errcode, errmsg, result, rlen);
    call_run(c, n);
}

/* ---- moor.log, moor.now ------------------------------------------------------- */

static int l_log(lua_State *L)
{
    static const char *const levels[] = {"debug", "info", "warn", "error", NULL};
    int level = luaL_checkoption(L, 1, NULL, levels);
    const char *msg = luaL_checkstring(L, 2);
    lua_Debug ar;

    if (lua_getstack(L, 1, &ar) && lua_getinfo(L, "Sl", &ar))
        moor_log_write(level, ar.short_src, ar.currentline, "%s", msg);
    else
        moor_log_write(level, "lua", 0, "%s", msg);
    return 0;
}

static int l_now(lua_State *L)
{
    lua_pushnumber(L, (lua_Number)moor_clock_wall_ms());
    return 1;
}

static int l_config_only(lua_State *L)
{
    return luaL_error(L, "moor.%s can only be called while the config file loads",
                      lua_tostring(L, lua_upvalueindex(1)));
}

/* ---- the state ---------------------------------------------------------------- */

#ifdef MOOR_SANITIZE
/* TESTING.md: LuaJIT's own allocator hides Lua memory from ASan. */
static void *l_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    (void)ud, (void)osize;
    if (nsize == 0) {
        free(ptr);
        return NULL;
    }
    return realloc(ptr, nsize);
}
#endif

static int l_panic(lua_State *L)
{
    moor_log_error("Lua panic: %s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "?");
    abort();
}

static lua_State *new_state(void)
{
    lua_State *L = NULL;

#ifdef MOOR_SANITIZE
    L = lua_newstate(l_alloc, NULL);
#endif
    if (!L)
        L = luaL_newstate();
    if (!L)
        return NULL;
    lua_atpanic(L, l_panic);
    luaL_openlibs(L);
    luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
    return L;
}

/* The moor table: codec functions, get/put/del, log, now. */
static void push_moor(moor_lua_t *h)
{
    lua_State *L = h->L;
    static const int ops[] = {MOOR_LUA_GET, MOOR_LUA_PUT, MOOR_LUA_DEL};
    static const char *const names[] = {"get", "put", "del"};

    lua_createtable(L, 0, 24);
    moor_codec_register(L);
    for (int i = 0; i < 3; i++) {
        lua_pushlightuserdata(L, h);
        lua_pushinteger(L, ops[i]);
        lua_pushcclosure(L, l_kv, 2);
        lua_setfield(L, -2, names[i]);
    }
    lua_pushcfunction(L, l_log);
    lua_setfield(L, -2, "log");
    lua_pushcfunction(L, l_now);
    lua_setfield(L, -2, "now");
}

int moor_lua_new(const moor_lua_opts_t *o, moor_lua_t **out)
{
    moor_lua_t *h = calloc(1, sizeof(*h));
    moor_config_t def;

    *out = NULL;
    if (!h)
        return MOOR_ENOMEM;
    if (!o->root || strlen(o->root) >= sizeof(h->root)) {
        free(h);
        return moor_diag(MOOR_EINVAL, "Lua host: root directory missing or too long");
    }
    h->L = new_state();
    if (!h->L) {
        free(h);
        return moor_diag(MOOR_ENOMEM, "Lua host: cannot create a Lua state");
    }
    h->loop = o->loop;
    h->ops = o->ops;
    strcpy(h->root, o->root);
    h->free_head = NO_SLOT;
    h->handlers_ref = h->resolvers_ref = h->config_ref = LUA_NOREF;
    moor_config_default(&def);
    h->def_instructions = def.handler_instructions;
    h->def_timeout_ms = def.handler_timeout_ms;
    moor_codec_init(h->L);
    push_moor(h);
    lua_newtable(h->L); /* moor.arg: what moord's command line passes (--node) */
    lua_setfield(h->L, -2, "arg");
    moor_sandbox_push_env(h->L, -1, h->root);
    h->env_ref = luaL_ref(h->L, LUA_REGISTRYINDEX);
    h->moor_ref = luaL_ref(h->L, LUA_REGISTRYINDEX);
    *out = h;
    return 0;
}

void moor_lua_set_ops_ud(moor_lua_t *h, void *ud)
{
    h->ops.ud = ud;
}

unsigned moor_lua_inflight(const moor_lua_t *h)
{
    return h->inflight;
}

/* ---- config ------------------------------------------------------------------- */

/* on_sandbox(t) for lua/moor/config.lua; upvalue 1 = the environment. */
static int l_on_sandbox(lua_State *L)
{
    lua_settop(L, 1);
    lua_pushvalue(L, lua_upvalueindex(1));
    moor_sandbox_apply(L, 2, 1);
    return 0;
}

/* Pushes config.run and its arguments: path, env, moor, opts. */
static int push_config_run(moor_lua_t *h, const char *path)
{
    lua_State *L = h->L;
    char file[4200];

    snprintf(file, sizeof(file), "%s/lua/moor/config.lua", h->root);
    if (luaL_loadfilex(L, file, "t") || lua_pcall(L, 0, 1, 0))
        return moor_diag(MOOR_EINVAL, "cannot load the config schema: %s", lua_tostring(L, -1));
    lua_getfield(L, -1, "run");
    lua_remove(L, -2);
    lua_pushstring(L, path);
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->env_ref);
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->moor_ref);
    lua_createtable(L, 0, 2);
    lua_getfield(L, -3, "require");
    lua_setfield(L, -2, "require");
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->env_ref);
    lua_pushcclosure(L, l_on_sandbox, 1);
    lua_setfield(L, -2, "on_sandbox");
    return 0;
}

static void keep_field(moor_lua_t *h, int t, const char *k, int *ref)
{
    luaL_unref(h->L, LUA_REGISTRYINDEX, *ref);
    lua_getfield(h->L, t, k);
    if (!lua_istable(h->L, -1)) {
        lua_pop(h->L, 1);
        lua_newtable(h->L);
    }
    *ref = luaL_ref(h->L, LUA_REGISTRYINDEX);
}

/* After loading, the config functions only explain that they are over. */
static void seal_config_api(moor_lua_t *h)
{
    static const char *const fns[] = {"cfg", "space", "resolver", "handle", "gossip", NULL};
    lua_State *L = h->L;

    lua_rawgeti(L, LUA_REGISTRYINDEX, h->moor_ref);
    for (const char *const *f = fns; *f; f++) {
        lua_pushstring(L, *f);
        lua_pushcclosure(L, l_config_only, 1);
        lua_setfield(L, -2, *f);
    }
    lua_pop(L, 1);
}

int moor_lua_set_arg(moor_lua_t *h, const char *key, const char *value)
{
    lua_State *L = h->L;

    lua_rawgeti(L, LUA_REGISTRYINDEX, h->moor_ref);
    lua_getfield(L, -1, "arg");
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, -3, "arg");
    }
    lua_pushstring(L, value);
    lua_setfield(L, -2, key);
    lua_pop(L, 2);
    return 0;
}

int moor_lua_load_config(moor_lua_t *h, const char *path, moor_config_t *cfg)
{
    lua_State *L = h->L;
    int top = lua_gettop(L), rc;
    budget_t b, *pb;

    moor_config_default(cfg);
    if ((rc = push_config_run(h, path)))
        goto out;
    budget_init(&b, UINT64_MAX / 2, CONFIG_TIMEOUT_MS);
    pb = budget_enter(L, &b);
    rc = lua_pcall(L, 4, 1, 0);
    budget_leave(L, pb);
    if (rc) {
        const char *msg = lua_tostring(L, -1);
        rc = moor_diag(MOOR_EINVAL, "%s%s", msg ? msg : "config failed",
                       b.over ? " (the config file ran for too long)" : "");
        goto out;
    }
    if ((rc = moor_config_from_lua(L, -1, cfg)))
        goto out;
    luaL_unref(L, LUA_REGISTRYINDEX, h->config_ref);
    lua_pushvalue(L, -1);
    h->config_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    keep_field(h, lua_gettop(L), "handlers", &h->handlers_ref);
    keep_field(h, lua_gettop(L), "resolvers", &h->resolvers_ref);
    h->def_instructions = cfg->handler_instructions;
    h->def_timeout_ms = cfg->handler_timeout_ms;
    seal_config_api(h);
out:
    lua_settop(L, top);
    return rc;
}

/* ---- calls -------------------------------------------------------------------- */

static void reply_now(moor_lua_reply_fn reply, void *ud, const char *code, const char *fmt,
                      const char *name, size_t nlen)
{
    char msg[512];

    snprintf(msg, sizeof(msg), fmt, (int)(nlen > 200 ? 200 : nlen), name);
    reply(ud, code, msg, NULL, 0);
}

/* Pushes entry name of the table ref if it has type want (a handler's
 * {fn, instructions, timeout_ms} or a resolver function), or returns 0 with
 * nothing pushed. */
static int find_entry(moor_lua_t *h, int ref, const char *name, size_t nlen, int want)
{
    lua_State *L = h->L;

    if (ref == LUA_NOREF)
        return 0;
    lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
    lua_pushlstring(L, name, nlen);
    lua_rawget(L, -2);
    lua_remove(L, -2);
    if (lua_type(L, -1) == want)
        return 1;
    lua_pop(L, 1);
    return 0;
}

static double entry_num(lua_State *L, int idx, const char *k, double def)
{
    double v = def;

    lua_getfield(L, idx, k);
    if (lua_type(L, -1) == LUA_TNUMBER)
        v = lua_tonumber(L, -1);
    lua_pop(L, 1);
    return v;
}

static call_t *call_new(moor_lua_t *h, const char *name, size_t nlen, moor_lua_reply_fn reply,
                        void *ud)
{
    call_t *c = calloc(1, sizeof(*c));

    if (!c)
        return NULL;
    if (slot_alloc(h, c)) {
        free(c);
        return NULL;
    }
    c->h = h;
    c->reply = reply;
    c->ud = ud;
    c->co_ref = LUA_NOREF;
    snprintf(c->name, sizeof(c->name), "%.*s", (int)(nlen > 60 ? 60 : nlen), name);
    uv_timer_init(h->loop, &c->timer);
    c->timer.data = c;
    h->inflight++;
    return c;
}

/* Decodes the nargs arguments onto the coroutine; 0 or an error code. */
static int push_args(call_t *c, const char *args, size_t alen, uint32_t nargs)
{
    const char *p = args, *end = args + alen;
    int rc;

    if (!lua_checkstack(c->co, (int)nargs + LUA_MINSTACK))
        return moor_diag(MOOR_EINVAL, "too many arguments");
    for (uint32_t i = 0; i < nargs; i++)
        if ((rc = moor_codec_decode(c->co, &p, end)))
            return rc;
    return 0;
}

int moor_lua_call(moor_lua_t *h, const char *name, size_t nlen, const char *args, size_t alen,
                  uint32_t nargs, moor_lua_reply_fn reply, void *ud)
{
    lua_State *L = h->L;
    call_t *c;
    int rc;

    if (h->closing) {
        reply(ud, "SHUTTING_DOWN", "the node is shutting down", NULL, 0);
        return 0;
    }
    if (!find_entry(h, h->handlers_ref, name, nlen, LUA_TTABLE)) {
        reply_now(reply, ud, "NO_HANDLER", "no handler named '%.*s'", name, nlen);
        return 0;
    }
    if (nargs > MAX_CALL_ARGS) {
        lua_pop(L, 1);
        reply_now(reply, ud, "BAD_REQUEST", "too many arguments for handler '%.*s' (max 200)", name,
                  nlen);
        return 0;
    }
    if (!(c = call_new(h, name, nlen, reply, ud))) {
        lua_pop(L, 1);
        reply(ud, "OUT_OF_MEMORY", "no memory for a handler call", NULL, 0);
        return 0;
    }
    budget_init(&c->budget, (uint64_t)entry_num(L, -1, "instructions", (double)h->def_instructions),
                (unsigned)entry_num(L, -1, "timeout_ms", h->def_timeout_ms));
    c->co = lua_newthread(L);
    c->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_getfield(L, -1, "fn");
    lua_xmove(L, c->co, 1);
    lua_pop(L, 1);
    if ((rc = push_args(c, args, alen, nargs))) {
        call_fail(c, "BAD_REQUEST", "arguments of handler '%s': %s", c->name, moor_diag_msg(rc));
        return 0;
    }
    uv_timer_start(&c->timer, on_timer, c->budget.timeout_ms, 0);
    call_run(c, (int)nargs);
    return 0;
}

/* ---- resolvers ----------------------------------------------------------------- */

int moor_lua_resolve(moor_lua_t *h, const char *name, size_t nlen, const char *siblings,
                     size_t slen, moor_buf_t *out)
{
    lua_State *L = h->L;
    int top = lua_gettop(L), rc;
    const char *p = siblings;
    budget_t b, *pb;
    size_t old = out->len;

    if (!find_entry(h, h->resolvers_ref, name, nlen, LUA_TFUNCTION))
        return moor_diag(MOOR_ENOHANDLER, "no resolver named '%.*s'",
                         (int)(nlen > 200 ? 200 : nlen), name);
    if ((rc = moor_codec_decode(L, &p, siblings + slen))) {
        lua_settop(L, top);
        return rc;
    }
    budget_init(&b, h->def_instructions, h->def_timeout_ms);
    pb = budget_enter(L, &b);
    rc = lua_pcall(L, 1, 1, 0);
    budget_leave(L, pb);
    if (rc) {
        rc = b.over ? moor_diag(MOOR_EHTIMEOUT, "resolver '%.*s' stopped: over its %s budget",
                                (int)nlen, name, b.over == OVER_INSTR ? "instruction" : "time")
                    : moor_diag(MOOR_EHANDLER, "resolver '%.*s': %s", (int)nlen, name,
                                lua_tostring(L, -1) ? lua_tostring(L, -1) : "error");
    } else if ((rc = moor_codec_encode(L, -1, 0, out))) {
        out->len = old;
        rc = moor_diag_wrap(rc, rc, "resolver '%.*s' returned a value that cannot be encoded",
                            (int)nlen, name);
    }
    lua_settop(L, top);
    return rc;
}

/* ---- teardown ------------------------------------------------------------------ */

void moor_lua_free(moor_lua_t *h)
{
    if (!h)
        return;
    h->closing = 1;
    for (uint32_t i = 0; i < h->nslots; i++)
        if (h->slots[i].c)
            call_fail(h->slots[i].c, "SHUTTING_DOWN",
                      "handler '%s' cancelled: the node is "
                      "shutting down",
                      h->slots[i].c->name);
    lua_close(h->L);
    free(h->slots);
    free(h);
}
