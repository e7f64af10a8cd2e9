/*
 * laws.c -- checks the laws of a loaded config's resolvers before the
 * config goes live (moord --check, a reload): moor_lua_check_laws.
 *
 * The generating and comparing is lua/moor/laws.lua's (pure Lua, also what
 * moor.testing runs under busted); this file runs it inside the host and
 * gives it a way to call a resolver exactly as a read does: the generated
 * siblings are encoded as MessagePack and handed to moor_lua_resolve (the
 * resolver's own globals, the node's default handler budget per call, the
 * heap cap, the result encoded within limits.value_max), and the encoded
 * result is decoded back, so what the laws compare is what would be stored.
 *
 * Bounds: each resolver's check stops calling it once MOOR_LUA_LAWS_MS
 * have passed (laws.lua reports how many runs it did); laws.lua itself and
 * any value generator the config gave run under a budget of that plus one
 * resolver call's time, capped by the heap limit, so a generator that
 * loops is stopped and reported as that resolver's failure.
 *
 * Threads: the loop thread (the host's).
 */
#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

#include "codec.h"
#include "host.h"
#include "lua_internal.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/err.h"

#define LAWS_SLACK_MS 1000 /* laws.lua's own work past the last call */
#define NAMES_SHOWN 200    /* bytes of failing resolver names in the diagnostic */

/* One resolver call's buffers: they live outside the protected part, so
 * an allocation the heap cap refuses while a value is encoded or decoded
 * (a Lua error) cannot leak them. */
typedef struct law_call {
    moor_lua_t *h;
    const char *name;
    size_t nlen;
    moor_buf_t sib, out;
    int rc;
} law_call_t;

/* Protected body of l_call: arg 1 = the law_call_t, arg 2 = the siblings.
 * Returns the decoded result (or nothing with c->rc set). */
static int call_body(lua_State *L)
{
    law_call_t *c = lua_touserdata(L, 1);
    const char *p;

    c->rc = moor_codec_encode(L, 2, 0, &c->sib);
    if (c->rc == 0)
        c->rc = moor_lua_resolve(c->h, c->name, c->nlen, c->sib.data, c->sib.len, &c->out);
    if (c->rc)
        return 0;
    p = c->out.data;
    c->rc = moor_codec_decode(L, &p, c->out.data + c->out.len);
    return c->rc ? 0 : 1;
}

/* call(name, siblings) for laws.lua: upvalue 1 = the host.  Raises the
 * resolver's failure as a message (without moor_lua_resolve's own
 * "resolver 'x': " prefix, which the report line already has). */
static int l_call(lua_State *L)
{
    law_call_t c = {
        .h = lua_touserdata(L, lua_upvalueindex(1)), .sib = MOOR_BUF_INIT, .out = MOOR_BUF_INIT};
    size_t plen;
    const char *msg;
    char prefix[128];
    int st;

    c.name = luaL_checklstring(L, 1, &c.nlen);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    lua_pushcfunction(L, call_body);
    lua_pushlightuserdata(L, &c);
    lua_pushvalue(L, 2);
    st = lua_pcall(L, 2, 1, 0);
    moor_buf_free(&c.sib);
    moor_buf_free(&c.out);
    if (st)
        return lua_error(L); /* the cap or the budget stopped it: passed on */
    if (c.rc == 0)
        return 1;
    msg = moor_diag_msg(c.rc);
    plen = (size_t)snprintf(prefix, sizeof(prefix),
                            "resolver '%.*s': ", (int)(c.nlen > 64 ? 64 : c.nlen), c.name);
    if (plen < sizeof(prefix) && strncmp(msg, prefix, plen) == 0)
        msg += plen;
    lua_pushstring(L, msg);
    return lua_error(L);
}

/* stop() for laws.lua: upvalue 1 = the deadline (monotonic ms). */
static int l_stop(lua_State *L)
{
    lua_pushboolean(L, (double)moor_clock_mono_ms() > lua_tonumber(L, lua_upvalueindex(1)));
    return 1;
}

/* Pushes lua/moor/laws.lua's module table, or returns an error with a
 * diagnostic (nothing pushed). */
static int push_laws(lua_State *L, const char *root)
{
    char file[4200];

    snprintf(file, sizeof(file), "%s/lua/moor/laws.lua", root);
    if (luaL_loadfilex(L, file, "t") || lua_pcall(L, 0, 1, 0)) {
        int rc = moor_diag(MOOR_EINVAL, "cannot load the law checks: %s", lua_tostring(L, -1));
        lua_pop(L, 1);
        return rc;
    }
    return 0;
}

/* Appends "resolver 'name': LINE\n" for every line of text. */
static int report_lines(moor_buf_t *report, const char *name, const char *text)
{
    char head[96];
    int hl = snprintf(head, sizeof(head), "resolver '%s': ", name), rc = 0;

    while (rc == 0) {
        size_t n = strcspn(text, "\n");
        rc = moor_buf_append(report, head, (size_t)hl);
        rc = rc ? rc : moor_buf_append(report, text, n);
        rc = rc ? rc : moor_buf_append(report, "\n", 1);
        if (!text[n])
            break;
        text += n + 1;
    }
    return rc;
}

/* Checks one resolver: laws at -4, config at -3, call at -2, name at -1
 * (left there).  *ok: whether it held its laws.  0 or MOOR_ENOMEM. */
static int check_one(moor_lua_inside_t *in, moor_buf_t *report, int *ok)
{
    lua_State *L = in->L;
    int top = lua_gettop(L), rc;
    moor_budget_t b, *pb;
    char name[80];
    const char *text;

    snprintf(name, sizeof(name), "%s", lua_tostring(L, top));
    lua_getfield(L, top - 3, "check_resolver");
    lua_pushvalue(L, top - 2);
    lua_pushvalue(L, top);
    lua_pushvalue(L, top - 1);
    lua_createtable(L, 0, 1);
    lua_pushnumber(L, (double)(moor_clock_mono_ms() + MOOR_LUA_LAWS_MS));
    lua_pushcclosure(L, l_stop, 1);
    lua_setfield(L, -2, "stop");
    moor_budget_init(&b, UINT64_MAX / 2, MOOR_LUA_LAWS_MS + in->timeout_ms + LAWS_SLACK_MS,
                     in->heap);
    pb = moor_budget_enter(L, &b, 1);
    rc = lua_pcall(L, 4, 2, 0);
    moor_budget_leave(L, pb);
    if (b.over) { /* laws.lua or a values generator: whatever a pcall made of it */
        *ok = 0;
        lua_pushfstring(L, "the check did not finish: stopped %s%s", moor_budget_over_text(b.over),
                        b.over == MOOR_OVER_MEMORY ? " (handler.memory_mb)" : "");
    } else if (rc) {
        *ok = 0;
        text = lua_tostring(L, -1);
        lua_pushfstring(L, "the check did not finish: %s", text ? text : "(no message)");
    } else {
        *ok = lua_toboolean(L, -2);
    }
    text = lua_tostring(L, -1);
    rc = report_lines(report, name, text ? text : "(no report)");
    lua_settop(L, top);
    if (b.over == MOOR_OVER_MEMORY)
        lua_gc(L, LUA_GCCOLLECT, 0);
    return rc ? MOOR_ENOMEM : 0;
}

/* Runs the check over every name of the list at the top; laws at -3 and
 * the config at -2 below it.  Counts and names the failures. */
static int check_all(moor_lua_t *h, moor_lua_inside_t *in, moor_buf_t *report)
{
    lua_State *L = in->L;
    int list = lua_gettop(L), n = (int)lua_objlen(L, list), failed = 0, rc = 0;
    char names[NAMES_SHOWN + 8] = "";
    size_t used = 0;

    for (int i = 1; i <= n && rc == 0; i++) {
        int ok;
        lua_pushvalue(L, list - 2);
        lua_pushvalue(L, list - 1);
        lua_pushlightuserdata(L, h);
        lua_pushcclosure(L, l_call, 1);
        lua_rawgeti(L, list, i);
        rc = check_one(in, report, &ok);
        if (rc == 0 && !ok) {
            failed++;
            if (used < NAMES_SHOWN)
                used += (size_t)snprintf(names + used, sizeof(names) - used, "%s'%s'",
                                         failed > 1 ? ", " : "", lua_tostring(L, -1));
        }
        lua_pop(L, 4);
    }
    if (rc)
        return moor_diag(rc, "no memory for the law check's report");
    if (failed)
        return moor_diag(MOOR_EHANDLER, "%d of %d resolver%s break%s a law: %s%s", failed, n,
                         n == 1 ? "" : "s", failed == 1 ? "s" : "", names,
                         used >= NAMES_SHOWN ? "..." : "");
    return 0;
}

int moor_lua_check_laws(moor_lua_t *h, moor_buf_t *report)
{
    moor_lua_inside_t in;
    moor_lua_stats_t saved;
    lua_State *L;
    int top, rc;
    moor_budget_t *outer = moor_budget_suspend();

    moor_lua_inside(h, &in);
    saved = *in.stats; /* generated runs are not the node's resolver calls */
    L = in.L;
    top = lua_gettop(L);
    if ((rc = push_laws(L, in.root)))
        goto out;
    if (!moor_lua_push_config(h)) {
        rc = moor_diag(MOOR_EINVAL, "no config loaded: nothing to check");
        goto out;
    }
    lua_getfield(L, top + 1, "resolver_names");
    lua_pushvalue(L, top + 2);
    if (lua_pcall(L, 1, 1, 0)) {
        rc = moor_diag(MOOR_EINVAL, "the law check failed: %s", lua_tostring(L, -1));
        goto out;
    }
    rc = check_all(h, &in, report);
out:
    *in.stats = saved;
    lua_settop(L, top);
    moor_budget_resume(L, outer);
    return rc;
}
