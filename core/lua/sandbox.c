/*
 * sandbox.c -- the environments the config file, the handlers and the
 * resolvers run in.
 *
 * What sandboxed code sees (the base table B, built from a whitelist):
 * assert, error, ipairs, pairs, next, pcall, xpcall, select, tonumber,
 * tostring, type, unpack, rawget, rawset, rawequal, rawlen (when the VM
 * has it), setmetatable, getmetatable, _VERSION; string (without dump,
 * with the matcher of pattern.c), table (with tablib.c's sort, move,
 * insert, remove), math, bit, os with time, clock and date only; moor;
 * load and require (below).  Not there: io, os.execute and the rest of os,
 * loadfile, dofile, loadstring, getfenv/setfenv, collectgarbage,
 * coroutine, debug, jit, ffi, package.  The config's sandbox = {io=, os=,
 * ffi=, debug=} opt-ins add io, the full os, require("ffi") and debug
 * (moor_sandbox_apply); jit is never exposed.
 *
 * Read-only tables: string, table, math, bit, os, moor, moor.arg, every
 * table a require returns, and the codec's marker metatables are seen
 * through proxies: an empty table whose metatable reads through to the
 * real one (__index), refuses writes (__newindex raises "cannot set
 * moor.put: moor is read-only") and is locked (__metatable = false, so
 * setmetatable fails and getmetatable says false).  A registry table maps
 * each proxy to its target (weak keys), so that rawset refuses proxies,
 * rawget, next, pairs and ipairs read the target, and tablib.c and the
 * codec's moor.array/moor.map refuse them.  C code keeps the real tables
 * and writes them as before (the host's moor table, moor.arg).
 *
 * Globals, one environment per handler and per resolver: every function
 * of sandboxed code (the config file, modules, load()ed chunks) has the
 * same function environment P, an empty table whose metatable sends reads
 * and writes to the *current* environment.  The host makes the
 * environment of the handler or resolver it is about to run current
 * (moor_sandbox_switch) and restores the previous one after, so a global
 * that a handler sets -- from its own code or from a module function or
 * config helper it calls -- lands in that handler's table, its _G, which
 * persists from one call of the handler to the next and which no other
 * handler or resolver sees.  While the config loads, the current
 * environment is the config's globals table CE (writable; reads fall
 * through to B).  Once it has loaded (moor_sandbox_seal), CE's contents
 * and B's are copied into one table CEH that every handler environment
 * reads through to, and CE becomes read-only: a config helper that writes
 * a global through a saved _G fails rather than reach other handlers.
 * P, B, CEH and the environments' metatables are unreachable from Lua
 * (there is no getfenv; the metatables are locked).
 *
 * load: text chunks only (mode "t"), P (or the caller's table) as the
 * environment, so bytecode is refused.  require: Lua files only, from
 * <root>/lua/ and <root>/plugins/ (names are dot-separated [A-Za-z0-9_]
 * words), loaded as text with P as their environment, cached per state;
 * a table module is returned (and cached) as a read-only proxy.
 *
 * Strings share one metatable; its __index is the sandbox's string table
 * itself (not the proxy, and unreachable: __metatable = false).
 *
 * Threads: the loop thread only.
 */
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "codec.h"
#include "lua_internal.h"

/* Registry keys: the addresses are unique, the values do not matter. */
static const char k_loaded = 'l';   /* the sandbox's module cache */
static const char k_busy = 'b';     /* sentinel value while a module loads */
static const char k_readonly = 'r'; /* proxy -> target, weak keys */
static const char k_base = 'B';     /* B */
static const char k_cenv = 'C';     /* CE */
static const char k_cdata = 'D';    /* CEH, once sealed */
static const char k_pmt = 'P';      /* P's metatable */
static const char k_envs = 'E';     /* {h = {name = env}, r = {name = env}} */

static void reg_push(lua_State *L, const char *key)
{
    lua_pushlightuserdata(L, (void *)key);
    lua_rawget(L, LUA_REGISTRYINDEX);
}

static void reg_set(lua_State *L, const char *key) /* pops the value */
{
    lua_pushlightuserdata(L, (void *)key);
    lua_insert(L, -2);
    lua_rawset(L, LUA_REGISTRYINDEX);
}

static int absidx(lua_State *L, int idx)
{
    return idx < 0 && idx > LUA_REGISTRYINDEX ? lua_gettop(L) + idx + 1 : idx;
}

/* ---- read-only proxies ---------------------------------------------------------- */

/* Pushes the proxy -> target map (weak keys), made on first use. */
static void push_readonly_map(lua_State *L)
{
    reg_push(L, &k_readonly);
    if (!lua_isnil(L, -1))
        return;
    lua_pop(L, 1);
    lua_newtable(L);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    reg_set(L, &k_readonly);
}

/* __newindex of a proxy; upvalue 1 = the table's name. */
static int l_readonly_set(lua_State *L)
{
    const char *what = lua_tostring(L, lua_upvalueindex(1));

    if (lua_type(L, 2) == LUA_TSTRING)
        return luaL_error(L, "cannot set %s.%s: %s is read-only", what, lua_tostring(L, 2), what);
    return luaL_error(L, "cannot set a field of %s: %s is read-only", what, what);
}

void moor_sandbox_push_readonly(lua_State *L, int idx, const char *name)
{
    idx = absidx(L, idx);
    lua_newtable(L);
    lua_createtable(L, 0, 3);
    lua_pushvalue(L, idx);
    lua_setfield(L, -2, "__index");
    lua_pushstring(L, name);
    lua_pushcclosure(L, l_readonly_set, 1);
    lua_setfield(L, -2, "__newindex");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, -2);
    push_readonly_map(L);
    lua_pushvalue(L, -2);
    lua_pushvalue(L, idx);
    lua_rawset(L, -3);
    lua_pop(L, 1);
}

/* Pushes the target of the proxy at idx, or nil when it is not one. */
static void push_target(lua_State *L, int idx)
{
    idx = absidx(L, idx);
    reg_push(L, &k_readonly);
    if (lua_isnil(L, -1))
        return;
    lua_pushvalue(L, idx);
    lua_rawget(L, -2);
    lua_remove(L, -2);
}

int moor_sandbox_readonly(lua_State *L, int idx)
{
    int ro;

    push_target(L, idx);
    ro = !lua_isnil(L, -1);
    lua_pop(L, 1);
    return ro;
}

/* Index of the table to read raw for the table at idx: its target when it
 * is a proxy (pushed), else idx itself (nothing pushed). */
static int raw_source(lua_State *L, int idx)
{
    push_target(L, idx);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return idx;
    }
    return lua_gettop(L);
}

static int l_rawset(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checkany(L, 2);
    luaL_checkany(L, 3);
    if (moor_sandbox_readonly(L, 1))
        return luaL_error(L, "rawset: the table is read-only");
    lua_settop(L, 3);
    lua_rawset(L, 1);
    return 1;
}

static int l_rawget(lua_State *L)
{
    int src;

    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_checkany(L, 2);
    lua_settop(L, 2);
    src = raw_source(L, 1);
    lua_pushvalue(L, 2);
    lua_rawget(L, src);
    return 1;
}

static int l_next(lua_State *L)
{
    int src;

    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 2);
    src = raw_source(L, 1);
    lua_pushvalue(L, 2);
    if (lua_next(L, src))
        return 2;
    lua_pushnil(L);
    return 1;
}

/* pairs(t): the VM's own next (and its fast loop) unless t is a proxy.
 * Upvalue 1 = the VM's next. */
static int l_pairs(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    if (moor_sandbox_readonly(L, 1))
        lua_pushcfunction(L, l_next);
    else
        lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushvalue(L, 1);
    lua_pushnil(L);
    return 3;
}

static int l_inext(lua_State *L)
{
    lua_Integer i = luaL_checkinteger(L, 2) + 1;
    int src;

    luaL_checktype(L, 1, LUA_TTABLE);
    src = raw_source(L, 1);
    lua_rawgeti(L, src, (int)i);
    if (lua_isnil(L, -1))
        return 0;
    lua_pushinteger(L, i);
    lua_insert(L, -2);
    return 2;
}

/* ipairs(t): the VM's iterator unless t is a proxy.  Upvalue 1 = the VM's
 * iterator function. */
static int l_ipairs(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    if (moor_sandbox_readonly(L, 1))
        lua_pushcfunction(L, l_inext);
    else
        lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushvalue(L, 1);
    lua_pushinteger(L, 0);
    return 3;
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

/* Replaces a table at the top with its read-only proxy. */
static void readonly_top(lua_State *L, const char *name)
{
    if (lua_type(L, -1) != LUA_TTABLE || moor_sandbox_readonly(L, -1))
        return;
    moor_sandbox_push_readonly(L, -1, name);
    lua_remove(L, -2);
}

/* require(name): upvalues 1 = P, 2 = root. */
static int l_require(lua_State *L)
{
    size_t n;
    const char *name = luaL_checklstring(L, 1, &n);
    const char *root = lua_tostring(L, lua_upvalueindex(2));
    char path[4400];

    lua_settop(L, 1);
    reg_push(L, &k_loaded); /* 2: cache */
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
            readonly_top(L, name);
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
 * 1 = the real load, 2 = P. */
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

/* ---- building B ------------------------------------------------------------------ */

/* Pushes a copy of global table lib without the names in skip. */
static void copy_lib(lua_State *L, const char *lib, const char *const *skip)
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

/* Sets B[name] = a read-only proxy of the table at the top (popped). */
static void set_readonly(lua_State *L, int b, const char *name)
{
    moor_sandbox_push_readonly(L, -1, name);
    lua_setfield(L, b, name);
    lua_pop(L, 1);
}

static void set_string_metatable(lua_State *L, int string_idx)
{
    lua_pushliteral(L, "");
    if (lua_getmetatable(L, -1)) {
        lua_pushvalue(L, string_idx);
        lua_setfield(L, -2, "__index");
        lua_pushboolean(L, 0);
        lua_setfield(L, -2, "__metatable");
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

static void add_base_functions(lua_State *L, int b)
{
    static const char *const plain[] = {"assert",       "error",    "pcall",    "xpcall",
                                        "select",       "tonumber", "tostring", "type",
                                        "unpack",       "rawequal", "rawlen",   "setmetatable",
                                        "getmetatable", "_VERSION", NULL};
    static const struct {
        const char *name;
        lua_CFunction fn;
    } wrapped[] = {{"rawset", l_rawset}, {"rawget", l_rawget}, {"next", l_next}};

    for (const char *const *p = plain; *p; p++) {
        lua_getglobal(L, *p);
        lua_setfield(L, b, *p);
    }
    for (size_t i = 0; i < sizeof(wrapped) / sizeof(wrapped[0]); i++) {
        lua_pushcfunction(L, wrapped[i].fn);
        lua_setfield(L, b, wrapped[i].name);
    }
    lua_getglobal(L, "next");
    lua_pushcclosure(L, l_pairs, 1);
    lua_setfield(L, b, "pairs");
    lua_getglobal(L, "ipairs"); /* ipairs({}) returns the VM's iterator */
    lua_newtable(L);
    lua_call(L, 1, 1);
    lua_pushcclosure(L, l_ipairs, 1);
    lua_setfield(L, b, "ipairs");
}

static void add_libraries(lua_State *L, int b)
{
    static const char *const no_dump[] = {"dump", NULL};
    static const char *const os_keep[] = {"time", "clock", "date", NULL};

    copy_lib(L, "string", no_dump);
    moor_pattern_register(L, -1);
    set_string_metatable(L, lua_gettop(L));
    set_readonly(L, b, "string");
    copy_lib(L, "table", NULL);
    moor_tablib_register(L, -1);
    set_readonly(L, b, "table");
    copy_lib(L, "math", NULL);
    set_readonly(L, b, "math");
    copy_lib(L, "bit", NULL);
    set_readonly(L, b, "bit");
    lua_getglobal(L, "os");
    lua_createtable(L, 0, 3);
    for (const char *const *k = os_keep; *k; k++) {
        lua_getfield(L, -2, *k);
        lua_setfield(L, -2, *k);
    }
    lua_remove(L, -2);
    set_readonly(L, b, "os");
}

/* The codec's markers: getmetatable(decoded_array) gives a read-only
 * proxy, so nobody can rename moor.array for everybody. */
static void protect_markers(lua_State *L)
{
    static const char *const names[] = {"moor.array", "moor.map", "moor.bin", "moor.ext"};

    moor_codec_push_markers(L);
    for (int i = 0; i < 4; i++) {
        int mt = lua_gettop(L) - 3 + i;
        if (!lua_istable(L, mt))
            continue;
        moor_sandbox_push_readonly(L, mt, names[i]);
        lua_setfield(L, mt, "__metatable");
    }
    lua_pop(L, 4);
}

/* Pushes B; p is the index of P (for load and require). */
static void push_base(lua_State *L, int moor_idx, const char *root, int p)
{
    int b;

    lua_newtable(L);
    b = lua_gettop(L);
    add_base_functions(L, b);
    add_libraries(L, b);
    moor_sandbox_push_readonly(L, moor_idx, "moor");
    lua_setfield(L, b, "moor");
    lua_getglobal(L, "load");
    lua_pushvalue(L, p);
    lua_pushcclosure(L, l_load, 2);
    lua_setfield(L, b, "load");
    lua_pushvalue(L, p);
    lua_pushstring(L, root);
    lua_pushcclosure(L, l_require, 2);
    lua_setfield(L, b, "require");
}

/* ---- environments ------------------------------------------------------------------ */

/* Pushes a new table whose reads fall through to the table at proto and
 * whose _G is itself; its metatable is locked. */
static void push_env(lua_State *L, int proto)
{
    proto = absidx(L, proto);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, -2, "_G");
    lua_createtable(L, 0, 2);
    lua_pushvalue(L, proto);
    lua_setfield(L, -2, "__index");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, -2);
}

/* Points P at the environment at idx. */
static void point_p(lua_State *L, int idx)
{
    idx = absidx(L, idx);
    reg_push(L, &k_pmt);
    lua_pushvalue(L, idx);
    lua_setfield(L, -2, "__index");
    lua_pushvalue(L, idx);
    lua_setfield(L, -2, "__newindex");
    lua_pop(L, 1);
}

void moor_sandbox_push_env(lua_State *L, int moor_idx, const char *root)
{
    int b, p;

    moor_idx = absidx(L, moor_idx);
    lua_newtable(L); /* the module cache */
    reg_set(L, &k_loaded);
    lua_createtable(L, 0, 2); /* envs */
    lua_newtable(L);
    lua_setfield(L, -2, "h");
    lua_newtable(L);
    lua_setfield(L, -2, "r");
    reg_set(L, &k_envs);

    lua_newtable(L); /* P, with its metatable */
    p = lua_gettop(L);
    lua_createtable(L, 0, 3);
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_pushvalue(L, -1);
    reg_set(L, &k_pmt);
    lua_setmetatable(L, p);

    push_base(L, moor_idx, root, p);
    b = lua_gettop(L);
    lua_pushvalue(L, b);
    reg_set(L, &k_base);
    push_env(L, b); /* CE: the config's globals, current while it loads */
    point_p(L, -1);
    reg_set(L, &k_cenv);
    lua_pop(L, 1); /* B; leaves P */
    protect_markers(L);
}

static int opted(lua_State *L, int opt_idx, const char *k)
{
    int on;

    lua_getfield(L, opt_idx, k);
    on = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return on;
}

/* Makes global lib visible as B[lib] and as require(lib), read-only. */
static void expose(lua_State *L, int b, const char *lib)
{
    lua_getglobal(L, lib);
    if (lua_isnil(L, -1)) { /* ffi is preloaded, not global */
        lua_pop(L, 1);
        lua_getglobal(L, "require");
        lua_pushstring(L, lib);
        if (lua_pcall(L, 1, 1, 0))
            lua_pushnil(L);
    }
    readonly_top(L, lib);
    if (strcmp(lib, "ffi") != 0) {
        lua_pushvalue(L, -1);
        lua_setfield(L, b, lib);
    }
    reg_push(L, &k_loaded);
    lua_insert(L, -2);
    lua_setfield(L, -2, lib);
    lua_pop(L, 1);
}

void moor_sandbox_apply(lua_State *L, int opt_idx)
{
    static const char *const libs[] = {"io", "os", "ffi", "debug", NULL};
    int b;

    opt_idx = absidx(L, opt_idx);
    if (!lua_istable(L, opt_idx))
        return;
    reg_push(L, &k_base);
    b = lua_gettop(L);
    for (const char *const *l = libs; *l; l++)
        if (opted(L, opt_idx, *l))
            expose(L, b, *l);
    lua_pop(L, 1);
}

/* __newindex of the sealed config globals. */
static int l_sealed_set(lua_State *L)
{
    return luaL_error(L,
                      "cannot set global '%s': the config's globals are read-only once it has "
                      "loaded (a handler or resolver writes its own globals through its _G)",
                      lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : "?");
}

/* Copies every pair of the table at from into the table at to (raw). */
static void copy_pairs(lua_State *L, int from, int to)
{
    lua_pushnil(L);
    while (lua_next(L, from)) {
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, to);
    }
}

void moor_sandbox_seal(lua_State *L)
{
    int ce, data;

    reg_push(L, &k_cenv);
    ce = lua_gettop(L);
    lua_newtable(L); /* CEH = B's names, then the config's globals over them */
    data = lua_gettop(L);
    reg_push(L, &k_base);
    copy_pairs(L, lua_gettop(L), data);
    lua_pop(L, 1);
    copy_pairs(L, ce, data);
    lua_pushnil(L);
    while (lua_next(L, ce)) { /* empty CE: every read goes to CEH */
        lua_pop(L, 1);
        lua_pushvalue(L, -1);
        lua_pushnil(L);
        lua_rawset(L, ce);
    }
    lua_createtable(L, 0, 3);
    lua_pushvalue(L, data);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_sealed_set);
    lua_setfield(L, -2, "__newindex");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, ce);
    push_readonly_map(L);
    lua_pushvalue(L, ce);
    lua_pushvalue(L, data);
    lua_rawset(L, -3);
    lua_pop(L, 1);
    lua_pushvalue(L, data);
    reg_set(L, &k_cdata);
    point_p(L, ce);
    lua_pop(L, 2);
}

void moor_sandbox_push_own_env(lua_State *L, int kind, const char *name, size_t len)
{
    reg_push(L, &k_envs);
    lua_getfield(L, -1, kind == MOOR_SANDBOX_RESOLVER ? "r" : "h");
    lua_remove(L, -2);
    lua_pushlstring(L, name, len);
    lua_rawget(L, -2);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        reg_push(L, &k_cdata);
        if (lua_isnil(L, -1)) { /* not sealed: read through to the config's globals */
            lua_pop(L, 1);
            reg_push(L, &k_cenv);
        }
        push_env(L, -1);
        lua_remove(L, -2);
        lua_pushlstring(L, name, len);
        lua_pushvalue(L, -2);
        lua_rawset(L, -4);
    }
    lua_remove(L, -2);
}

void moor_sandbox_switch(lua_State *L, int idx)
{
    idx = absidx(L, idx);
    reg_push(L, &k_pmt);
    lua_getfield(L, -1, "__index");
    lua_remove(L, -2);
    point_p(L, idx);
}
