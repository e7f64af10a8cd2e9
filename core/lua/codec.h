/*
 * codec.h -- MessagePack <-> Lua values, in C, for the host and for the
 * moor_core Lua module.
 *
 * The mapping (README "Lua API" repeats it for users):
 *   nil, true/false            <-> nil, bool
 *   integral numbers within +-2^53  -> int;  ints within +-2^53 -> number
 *   ints outside +-2^53            -> int64_t / uint64_t cdata (exact)
 *   int64_t / uint64_t cdata       -> int (exact)
 *   other numbers (NaN, inf, -0.0, fractions) -> float64; float32/64 -> number
 *   strings: valid UTF-8 -> str, anything else -> bin; str and bin -> string;
 *            moor.bin(s) forces bin
 *   tables: keys exactly 1..n (n >= 1) -> array; an empty table -> array;
 *           anything else -> map.  Decoded arrays and maps carry a marker
 *           metatable (moor.array / moor.map) and encode as what they were,
 *           so an empty map stays a map; nil holes of a marked array are
 *           kept up to its largest index.
 *   ext                         <-> a table {ext=type, data=} marked moor.ext
 *   functions, userdata, threads, other cdata, cycles, nesting deeper than
 *   MOOR_CODEC_MAX_DEPTH -> an error naming the problem and where it is
 *   ("cannot encode a function at [3].x").
 *
 * Errors never longjmp out of these functions (they return codes with a
 * diagnostic); only an out-of-memory inside the Lua VM can raise, and
 * callers run them where that is safe (a lua_CFunction or a pcall).
 *
 * Bounds (moor_codec_set_limits, per state): encoding stops with
 * MOOR_EVALTOOBIG as soon as its output passes a size, so a table that
 * shares subtables (t = {s, s}, s = {u, u}, ... 30 levels: 2^30 leaves)
 * never becomes gigabytes; and a tick function is called every
 * MOOR_CODEC_TICK values encoded or decoded, so the caller can stop a long
 * encode or decode by its budget (MOOR_EHTIMEOUT).
 */
#ifndef MOOR_LUA_CODEC_H
#define MOOR_LUA_CODEC_H

#include <lua.h>

#include "util/buf.h"

#define MOOR_CODEC_MAX_DEPTH 64 /* same as MOOR_MP_MAX_DEPTH */
#define MOOR_CODEC_TICK 4096    /* values between two calls of the tick function */

/* Told that steps more values were encoded or decoded; returns nonzero to
 * stop (the encode or decode then fails with MOOR_EHTIMEOUT).  Must not
 * raise a Lua error. */
typedef int (*moor_codec_tick_fn)(lua_State *L, unsigned steps);

/* ===== API ===== */

/* Creates the marker metatables and the 64-bit helpers in L's registry
 * (idempotent).  Needs LuaJIT's ffi for 64-bit integers; without it, the
 * codec still works and reports those integers as errors.  0 or
 * MOOR_ENOMEM. */
int moor_codec_init(lua_State *L);

/* Sets L's bounds: tick (NULL: none) and the largest output of encode
 * from Lua (moor.encode) in bytes (0: unbounded).  Without a call, there
 * are none.  REQUIRES: moor_codec_init(L) done.  May raise on OOM. */
void moor_codec_set_limits(lua_State *L, moor_codec_tick_fn tick, size_t encode_max);

/* Appends the MessagePack encoding of the value at idx to out.  With
 * as_map, a table at idx is encoded as a map whatever its keys (request
 * options).  0, MOOR_EINVAL (diagnostic says what and where) or
 * MOOR_ENOMEM; on error out may hold a partial encoding past its old
 * length (the caller truncates).  Leaves the Lua stack as it found it. */
int moor_codec_encode(lua_State *L, int idx, int as_map, moor_buf_t *out);

/* moor_codec_encode with a bound: MOOR_EVALTOOBIG (diagnostic names max)
 * as soon as the encoding would pass max bytes, MOOR_EHTIMEOUT when the
 * tick function says stop. */
int moor_codec_encode_max(lua_State *L, int idx, int as_map, size_t max, moor_buf_t *out);

/* Decodes one object at *p (bounded by end) and pushes it; advances *p.
 * 0, or MOOR_EPROTO / MOOR_EAGAIN (malformed / truncated) / MOOR_EINVAL
 * (valid MessagePack Lua cannot hold: a nil or NaN map key, a 64-bit
 * integer without ffi) or MOOR_EHTIMEOUT (the tick said stop) with a
 * diagnostic; on error pushes nothing and leaves *p as it was. */
int moor_codec_decode(lua_State *L, const char **p, const char *end);

/* Sets encode, decode, array, map, bin and ext (lua_CFunctions) in the
 * table at the top of the stack.  REQUIRES: moor_codec_init(L) done.
 * array and map refuse a table whose metatable is protected (has a
 * __metatable field) unless it is one of the markers, as setmetatable
 * does. */
void moor_codec_register(lua_State *L);

/* Pushes the four marker metatables: array, map, bin, ext (the sandbox
 * protects them).  REQUIRES: moor_codec_init(L) done. */
void moor_codec_push_markers(lua_State *L);

#endif
