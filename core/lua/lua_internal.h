/*
 * lua_internal.h -- what the files of core/lua share and nobody else uses:
 * the sandbox (sandbox.c) and filling a moor_config_t from the table that
 * lua/moor/config.lua returns (config.c).
 */
#ifndef MOOR_LUA_INTERNAL_H
#define MOOR_LUA_INTERNAL_H

#include <lua.h>

#include "config.h"

/* ===== API ===== */

/* Builds the handlers' environment (see sandbox.c) with moor = the table
 * at moor_idx, and pushes it.  root: directory holding lua/ and plugins/
 * (copied).  Also points the string metatable's __index at the
 * environment's string table (no string.dump through ("").dump).
 * REQUIRES: the standard libraries are open in L. */
void moor_sandbox_push_env(lua_State *L, int moor_idx, const char *root);

/* Widens the environment at env_idx with the opt-ins of the sandbox table
 * at opt_idx ({io=, os=, ffi=, debug=}). */
void moor_sandbox_apply(lua_State *L, int env_idx, int opt_idx);

/* Fills c (already holding defaults) from the normalised config table at
 * idx.  0, or MOOR_EINVAL with a diagnostic (a field C cannot take). */
int moor_config_from_lua(lua_State *L, int idx, moor_config_t *c);

#endif
