/*
 * module.c -- the moor_core Lua C module: the codec for plain LuaJIT
 * (busted specs, tools), `local core = require("moor_core")`.
 *
 * Built as build/moor_core.so, not linked to libluajit: the interpreter
 * that loads it provides the Lua symbols.  Exposes encode, decode, array,
 * map, bin and ext exactly as the node's handlers see them under moor.*.
 */
#include <lauxlib.h>
#include <lua.h>

#include "codec.h"

int luaopen_moor_core(lua_State *L);

int luaopen_moor_core(lua_State *L)
{
    moor_codec_init(L);
    lua_createtable(L, 0, 8);
    moor_codec_register(L);
    lua_pushinteger(L, MOOR_CODEC_MAX_DEPTH);
    lua_setfield(L, -2, "max_depth");
    return 1;
}
