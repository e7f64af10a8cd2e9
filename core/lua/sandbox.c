/*
 * sandbox.c -- the environment the config file and the handlers run in.
 *
 * One table S, built from a whitelist: assert, error, ipairs, pairs, next,
 * pcall, xpcall, select, tonumber, tostring, type, unpack, rawget, rawset,
 * rawequal, rawlen (when the VM has it), setmetatable, getmetatable; copies
 * of string (without dump), table, math and bit; os with time, clock and
 * date only; moor; _G = S itself.  Not there: io, os.execute and the rest
 * of os, loadfile, dofile, loadstring, getfenv/setfenv, collectgarbage,
 * coroutine (handlers yield only through moor.*), debug, jit, ffi, package.
 * The config's sandbox = {io=, os=, ffi=, debug=} opt-ins add io, the full
 * os, require("ffi") and debug (moor_sandbox_apply); jit is never exposed.
 *
 * Two replacements:
 *   load     -- text chunks only (mode "t"), with S (or the caller's table)
 *               as the environment, so string.dump output, or any bytecode,
 *               is refused.
 *   require  -- Lua files only, from <root>/lua/ and <root>/plugins/
 *               (names are dot-separated [A-Za-z0-9_] words, no "/" or
 *               ".."), loaded as text with S as their environment and
 *               cached per state; no C modules.
 *
 * Strings share one metatable whose __index is the real string library
 * (so ("").dump would reach string.dump): it is pointed at S.string and
 * protected with __metatable.
 *
 * Handlers share S, as OpenResty handlers share a worker's globals: a
 * global one handler sets is visible to the next.  Loop thread only.
 */
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "lua_internal.h"

static const char k_loaded = 'l'; /* registry: the sandbox's module cache */
static const char k_busy = 'b';   /* sentinel value while a module loads */

static void copy_fields(lua_State *L, const char *lib, const char *const *skip)
{
    lua_getglobal(L, lib);
    lua_newtable(L);
    if (lua_istable(L, -2)) {
        lua_pushnil(L);
        while (lua_next(L, -3)) {
            int drop = 0;
            if (lua_type(L, -2) == LUA_TSTRING)
                for (const char *const *s = skip; s && *s; s++)
                    drop |= strcmp(lua_tostring(L, -2), *s) == 0;
            if (drop) {
                lua_pop(L, 1);
                continue;
            }
            lua_pushvalue(L, -2);
            lua_insert(L, -2);
            lua_rawset(L, -4);
        }
    }
    lua_remove(L, -2);
}

/* ---- require ------------------------------------------------------------------ */

static int valid_module_name(const char *s, size_t n)
{
    int word = 0;

    if (n == 0 || n > 200)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '.') {
            if (!word)
                return 0;
            word = 0;
        } else if (c == '_' || (c >= '0' && c <= '9') || ((c | 32) >= 'a' && (c | 32) <= 'z')) {
            word = 1;
        } else {
            return 0;
        }
    }
    return word;
}

/* Finds the file of module name under root; 0 and path filled, or -1. */
static int find_module(const char *root, const char *name, char *path, size_t cap)
{
    static const char *const tpl[] = {"%s/lua/%s.lua", "%s/lua/%s/init.lua", "%s/plugins/%s.lua",
                                      "%s/plugins/%s/init.lua", "%s/%s.lua"};
    char rel[256];
    size_t n = strlen(name);

    for (size_t i = 0; i <= n && i < sizeof(rel); i++)
        rel[i] = name[i] == '.' ? '/' : name[i];
    for (size_t t = 0; t < sizeof(tpl) / sizeof(tpl[0]); t++) {
        /* the last form is for "plugins.x.y" (DESIGN.md's spelling) */
        if (t == 4 && strncmp(name, "plugins.", 8) != 0)
            continue;
        if ((size_t)snprintf(path, cap, tpl[t], root, rel) < cap && access(path, R_OK) == 0)
            return 0;
    }
    return -1;
}

/* require(name): upvalues 1 = S, 2 = root. */
static int l_require(lua_State *L)
{
    size_t n;
    const char *name = luaL_checklstring(L, 1, &n);
    const char *root = lua_tostring(L, lua_upvalueindex(2));
    char path[4400];

    lua_settop(L, 1);
    lua_pushlightuserdata(L, (void *)&k_loaded);
    lua_rawget(L, LUA_REGISTRYINDEX); /* 2: cache */
    lua_pushvalue(L, 1);
    lua_rawget(L, 2);
    if (lua_touserdata(L, -1) == (void *)&k_busy)
        return luaL_error(L, "module '%s' requires itself (a require loop)", name);
    if (!lua_isnil(L, -1))
        return 1;
    lua_pop(L, 1);
    if (!valid_module_name(name, n) || find_module(root, name, path, sizeof(path)))
        return luaL_error(L,
                          "module '%s' not found: the sandbox loads only Lua modules from "
                          "lua/ and plugins/ under %s",
                          name, root);
    lua_pushvalue(L, 1);
    lua_pushlightuserdata(L, (void *)&k_busy);
    lua_rawset(L, 2);
    if (luaL_loadfilex(L, path, "t") == 0) {
        lua_pushvalue(L, lua_upvalueindex(1));
        lua_setfenv(L, -2);
        lua_pushvalue(L, 1);
        if (lua_pcall(L, 1, 1, 0) == 0) {
            if (lua_isnil(L, -1)) {
                lua_pop(L, 1);
                lua_pushboolean(L, 1);
            }
            lua_pushvalue(L, 1);
            lua_pushvalue(L, -2);
            lua_rawset(L, 2);
            return 1;
        }
    }
    lua_pushvalue(L, 1); /* failed: forget the sentinel, re-raise */
    lua_pushnil(L);
    lua_rawset(L, 2);
    return lua_error(L);
}

/* load(chunk [, chunkname [, mode [, env]]]): text only.  Upvalues:
 * 1 = the real load, 2 = S. */
static int l_load(lua_State *L)
{
    size_t n = 0;
    const char *s = lua_type(L, 1) == LUA_TSTRING ? lua_tolstring(L, 1, &n) : NULL;
    int top;

    if (s && n > 0 && s[0] == '\033') {
        lua_pushnil(L);
        lua_pushliteral(L, "load: bytecode is not allowed in the sandbox (text chunks only)");
        return 2;
    }
    if (!s && lua_type(L, 1) != LUA_TFUNCTION)
        return luaL_argerror(L, 1, "string or function expected");
    lua_settop(L, 4);
    top = lua_gettop(L);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushvalue(L, 1);
    if (lua_isnil(L, 2))
        lua_pushstring(L, s ? s : "=(load)");
    else
        lua_pushvalue(L, 2);
    lua_pushliteral(L, "t");
    if (lua_istable(L, 4))
        lua_pushvalue(L, 4);
    else
        lua_pushvalue(L, lua_upvalueindex(2));
    lua_call(L, 4, LUA_MULTRET);
    return lua_gettop(L) - top;
}

/* ---- the environment ------------------------------------------------------------ */

static void set_string_metatable(lua_State *L, int env)
{
    lua_pushliteral(L, "");
    if (lua_getmetatable(L, -1)) {
        lua_getfield(L, env, "string");
        lua_setfield(L, -2, "__index");
        lua_pushboolean(L, 0);
        lua_setfield(L, -2, "__metatable");
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

void moor_sandbox_push_env(lua_State *L, int moor_idx, const char *root)
{
    static const char *const base[] = {
        "assert",   "error",    "ipairs",       "pairs",        "next",     "pcall",  "xpcall",
        "select",   "tonumber", "tostring",     "type",         "unpack",   "rawget", "rawset",
        "rawequal", "rawlen",   "setmetatable", "getmetatable", "_VERSION", NULL};
    static const char *const no_dump[] = {"dump", NULL};
    static const char *const os_keep[] = {"time", "clock", "date", NULL};
    int env;

    if (moor_idx < 0)
        moor_idx = lua_gettop(L) + moor_idx + 1;
    lua_newtable(L);
    env = lua_gettop(L);
    for (const char *const *b = base; *b; b++) {
        lua_getglobal(L, *b);
        lua_setfield(L, env, *b);
    }
    copy_fields(L, "string", no_dump);
    lua_setfield(L, env, "string");
    copy_fields(L, "table", NULL);
    lua_setfield(L, env, "table");
    copy_fields(L, "math", NULL);
    lua_setfield(L, env, "math");
    copy_fields(L, "bit", NULL);
    lua_setfield(L, env, "bit");
    lua_getglobal(L, "os");
    lua_createtable(L, 0, 3);
    for (const char *const *k = os_keep; *k; k++) {
        lua_getfield(L, -2, *k);
        lua_setfield(L, -2, *k);
    }
    lua_remove(L, -2);
    lua_setfield(L, env, "os");
    lua_pushvalue(L, moor_idx);
    lua_setfield(L, env, "moor");
    lua_pushvalue(L, env);
    lua_setfield(L, env, "_G");

    lua_getglobal(L, "load");
    lua_pushvalue(L, env);
    lua_pushcclosure(L, l_load, 2);
    lua_setfield(L, env, "load");
    lua_pushvalue(L, env);
    lua_pushstring(L, root);
    lua_pushcclosure(L, l_require, 2);
    lua_setfield(L, env, "require");

    lua_pushlightuserdata(L, (void *)&k_loaded);
    lua_newtable(L);
    lua_rawset(L, LUA_REGISTRYINDEX);
    set_string_metatable(L, env);
}

static int opted(lua_State *L, int opt_idx, const char *k)
{
    int on;

    lua_getfield(L, opt_idx, k);
    on = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return on;
}

/* Makes global lib visible as S[lib] and as require(lib). */
static void expose(lua_State *L, int env, const char *lib)
{
    lua_getglobal(L, lib);
    if (lua_isnil(L, -1)) { /* ffi is preloaded, not global */
        lua_pop(L, 1);
        lua_getglobal(L, "require");
        lua_pushstring(L, lib);
        if (lua_pcall(L, 1, 1, 0))
            lua_pushnil(L);
    }
    if (strcmp(lib, "ffi") != 0) {
        lua_pushvalue(L, -1);
        lua_setfield(L, env, lib);
    }
    lua_pushlightuserdata(L, (void *)&k_loaded);
    lua_rawget(L, LUA_REGISTRYINDEX);
    lua_insert(L, -2);
    lua_setfield(L, -2, lib);
    lua_pop(L, 1);
}

void moor_sandbox_apply(lua_State *L, int env, int opt_idx)
{
    static const char *const libs[] = {"io", "os", "ffi", "debug", NULL};

    if (env < 0)
        env = lua_gettop(L) + env + 1;
    if (opt_idx < 0)
        opt_idx = lua_gettop(L) + opt_idx + 1;
    if (!lua_istable(L, opt_idx))
        return;
    for (const char *const *l = libs; *l; l++)
        if (opted(L, opt_idx, *l))
            expose(L, env, *l);
}
