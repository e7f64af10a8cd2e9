/*
 * codec.c -- MessagePack <-> Lua values (the mapping is in codec.h).
 *
 * Encoding walks the value recursively, bounded by MOOR_CODEC_MAX_DEPTH,
 * and keeps the tables on the current path to detect cycles (a table met
 * twice on different branches is fine; only one that contains itself is a
 * cycle).  The error path ("[3].x") is built while unwinding: each level
 * writes its own key into a per-depth slot, so the happy path pays nothing.
 *
 * Decoding first validates the whole object with moor_mp_skip (bounded,
 * no allocation), so hostile counts or nesting are rejected before any
 * table is created; recursion is then bounded by the same depth.
 *
 * Bounds: an encode checks its output size after every value (and before
 * copying a string), so it stops at its limit however much the value
 * shares subtables; encode and decode count values and call the state's
 * tick function every MOOR_CODEC_TICK of them (the host's budget).  The
 * limits live in a userdata in the registry.
 *
 * 64-bit integers go through two small Lua functions built once per state
 * with ffi and kept in the registry: one makes an int64/uint64 cdata from
 * two 32-bit halves, one splits such a cdata back into halves.
 *
 * Threads: a lua_State belongs to one thread; the codec keeps no globals
 * other than the registry keys' addresses.
 */
#include "codec.h"

#include <lauxlib.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/mp.h"
#include "util/err.h"
#include "util/utf8.h"

#define LUA_TCDATA_ 10 /* LuaJIT's type tag for cdata (not in lua.h) */
#define TWO53 9007199254740992.0

/* Registry keys: the addresses are unique, the values do not matter. */
static const char k_array = 'a', k_map = 'm', k_bin = 'b', k_ext = 'e', k_make = 'k', k_split = 's',
                  k_limits = 'l';

typedef struct limits {
    moor_codec_tick_fn tick; /* NULL: no checks */
    size_t encode_max;       /* moor.encode's output bound; 0 = none */
    /* the markers' metatables (array, map, bin, ext) when they existed at
     * moor_codec_set_limits, else NULLs: an encode then looks them up */
    const void *mt_array, *mt_map, *mt_bin, *mt_ext;
} limits_t;

static const char helpers_src[] =
    "local ffi = require('ffi')\n"
    "local i64, u64 = ffi.typeof('int64_t'), ffi.typeof('uint64_t')\n"
    "local function make(hi, lo, signed)\n"
    "  local v = u64(hi) * 4294967296ULL + lo\n"
    "  if signed then return i64(v) end\n"
    "  return v\n"
    "end\n"
    "local function split(x)\n"
    "  local kind\n"
    "  if ffi.istype(i64, x) then kind = 1 elseif ffi.istype(u64, x) then kind = 2\n"
    "  else return 0, 0, 0 end\n"
    "  local u = u64(x)\n"
    "  return kind, tonumber(u / 4294967296ULL), tonumber(u % 4294967296ULL)\n"
    "end\n"
    "return make, split\n";

static void reg_get(lua_State *L, const char *key)
{
    lua_pushlightuserdata(L, (void *)key);
    lua_rawget(L, LUA_REGISTRYINDEX);
}

static void reg_set_top(lua_State *L, const char *key) /* pops the value */
{
    lua_pushlightuserdata(L, (void *)key);
    lua_insert(L, -2);
    lua_rawset(L, LUA_REGISTRYINDEX);
}

static limits_t *get_limits(lua_State *L)
{
    limits_t *l;

    reg_get(L, &k_limits);
    l = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return l;
}

static const void *reg_ptr(lua_State *L, const char *key)
{
    const void *p;

    reg_get(L, key);
    p = lua_topointer(L, -1);
    lua_pop(L, 1);
    return p;
}

void moor_codec_set_limits(lua_State *L, moor_codec_tick_fn tick, size_t encode_max)
{
    limits_t *l = get_limits(L);

    if (!l) {
        l = lua_newuserdata(L, sizeof(*l));
        reg_set_top(L, &k_limits);
    }
    l->tick = tick;
    l->encode_max = encode_max;
    l->mt_array = reg_ptr(L, &k_array); /* constant once made: saves four lookups an encode */
    l->mt_map = reg_ptr(L, &k_map);
    l->mt_bin = reg_ptr(L, &k_bin);
    l->mt_ext = reg_ptr(L, &k_ext);
}

void moor_codec_push_markers(lua_State *L)
{
    reg_get(L, &k_array);
    reg_get(L, &k_map);
    reg_get(L, &k_bin);
    reg_get(L, &k_ext);
}

static int bin_tostring(lua_State *L)
{
    lua_rawgeti(L, 1, 1);
    return 1;
}

static void new_marker(lua_State *L, const char *key, const char *name)
{
    lua_createtable(L, 0, 2);
    lua_pushstring(L, name);
    lua_setfield(L, -2, "__name");
    if (key == &k_bin) {
        lua_pushcfunction(L, bin_tostring);
        lua_setfield(L, -2, "__tostring");
    }
    reg_set_top(L, key);
}

int moor_codec_init(lua_State *L)
{
    reg_get(L, &k_array);
    if (!lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return 0;
    }
    lua_pop(L, 1);
    new_marker(L, &k_array, "moor.array");
    new_marker(L, &k_map, "moor.map");
    new_marker(L, &k_bin, "moor.bin");
    new_marker(L, &k_ext, "moor.ext");
    if (luaL_loadbuffer(L, helpers_src, sizeof(helpers_src) - 1, "=moor.codec") == 0 &&
        lua_pcall(L, 0, 2, 0) == 0) {
        reg_set_top(L, &k_split);
        reg_set_top(L, &k_make);
    } else {
        lua_pop(L, 1); /* no ffi: 64-bit integers are reported as errors */
    }
    return 0;
}

/* ---- encoding --------------------------------------------------------------- */

typedef struct enc {
    lua_State *L;
    msgpack_packer pk;
    moor_buf_t *out;
    size_t start, max;       /* out->len at the start; the output bound */
    moor_codec_tick_fn tick; /* NULL: no budget */
    unsigned steps;          /* values since the last tick */
    const void *mt_array, *mt_map, *mt_bin, *mt_ext;
    const void *path[MOOR_CODEC_MAX_DEPTH + 1]; /* tables on the current path */
    char what[96];                              /* what could not be encoded */
    char seg[MOOR_CODEC_MAX_DEPTH + 1][40];     /* key per depth, set on unwind */
    int err_depth;                              /* depth of the failure */
    int rc;
} enc_t;

static int enc_value(enc_t *e, int idx, int depth, int as_map);

static int enc_fail(enc_t *e, int depth, int rc, const char *fmt, const char *arg)
{
    snprintf(e->what, sizeof(e->what), fmt, arg);
    e->err_depth = depth;
    e->rc = rc;
    return rc;
}

static int is_ident(const char *s, size_t n)
{
    if (n == 0 || n > 30 || (s[0] >= '0' && s[0] <= '9'))
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!(s[i] == '_' || (s[i] >= '0' && s[i] <= '9') ||
              ((s[i] | 32) >= 'a' && (s[i] | 32) <= 'z')))
            return 0;
    return 1;
}

/* Names the key at kidx as one path segment at depth (for messages). */
static void name_segment(enc_t *e, int depth, int kidx)
{
    char *s = e->seg[depth];
    size_t cap = sizeof(e->seg[0]), n;
    const char *str;

    switch (lua_type(e->L, kidx)) {
    case LUA_TNUMBER: snprintf(s, cap, "[%.14g]", lua_tonumber(e->L, kidx)); break;
    case LUA_TSTRING:
        str = lua_tolstring(e->L, kidx, &n);
        if (is_ident(str, n))
            snprintf(s, cap, "%s%s", depth == 1 ? "" : ".", str);
        else
            snprintf(s, cap, "[\"%.*s%s\"]", (int)(n > 20 ? 20 : n), str, n > 20 ? "..." : "");
        break;
    default: snprintf(s, cap, "[<%s key>]", luaL_typename(e->L, kidx));
    }
}

/* Fails once the output holds more than e->max bytes, or would with n
 * more. */
static int over_max(enc_t *e, size_t n)
{
    size_t len = e->out->len - e->start;

    if (len <= e->max && n <= e->max - len)
        return 0;
    e->rc = MOOR_EVALTOOBIG;
    return MOOR_EVALTOOBIG;
}

static int pack_bytes(enc_t *e, const char *s, size_t n, int bin)
{
    if (n > UINT32_MAX)
        return enc_fail(e, 0, MOOR_EINVAL, "%s longer than 4 GiB", "a string");
    if (over_max(e, n + (n < 32 && !bin ? 1 : n < 256 ? 2 : n < 65536 ? 3 : 5)))
        return MOOR_EVALTOOBIG; /* checked before the copy: header and body */
    if (bin ? msgpack_pack_bin(&e->pk, n) : msgpack_pack_str(&e->pk, n))
        return MOOR_ENOMEM;
    return msgpack_pack_str_body(&e->pk, s, n) ? MOOR_ENOMEM : 0;
}

static int enc_number(enc_t *e, double d)
{
    int rc;

    if (d == floor(d) && fabs(d) <= TWO53 && !(d == 0 && signbit(d)))
        rc = d >= 0 ? msgpack_pack_uint64(&e->pk, (uint64_t)d)
                    : msgpack_pack_int64(&e->pk, (int64_t)d);
    else
        rc = msgpack_pack_double(&e->pk, d);
    return rc ? MOOR_ENOMEM : 0;
}

static int enc_cdata(enc_t *e, int idx, int depth)
{
    lua_State *L = e->L;
    int kind, rc = 0;
    uint64_t u;

    reg_get(L, &k_split);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return enc_fail(e, depth, MOOR_EINVAL, "cannot encode %s (no ffi in this state)",
                        "a cdata");
    }
    lua_pushvalue(L, idx);
    if (lua_pcall(L, 1, 3, 0)) {
        lua_pop(L, 1);
        return enc_fail(e, depth, MOOR_EINVAL, "cannot encode %s", "a cdata");
    }
    kind = (int)lua_tointeger(L, -3);
    u = ((uint64_t)lua_tonumber(L, -2) << 32) | (uint64_t)lua_tonumber(L, -1);
    lua_pop(L, 3);
    /* An int64 beyond 2^53 keeps its signed format so it decodes as an
     * int64 again (msgpack-c would pick the unsigned one for positives). */
    if (kind == 1 && ((int64_t)u > (int64_t)1 << 53 || (int64_t)u < -((int64_t)1 << 53)))
        rc = msgpack_pack_fix_int64(&e->pk, (int64_t)u);
    else if (kind == 1)
        rc = msgpack_pack_int64(&e->pk, (int64_t)u);
    else if (kind == 2)
        rc = msgpack_pack_uint64(&e->pk, u);
    else
        return enc_fail(e, depth, MOOR_EINVAL, "cannot encode %s (only int64_t and uint64_t)",
                        "a cdata");
    return rc ? MOOR_ENOMEM : 0;
}

/* Array-ness of an unmarked table: keys exactly 1..n, or no keys at all.
 * For a marked array, *n is the largest positive integer key and any other
 * key is an error. */
static int table_shape(enc_t *e, int idx, int depth, int marked_array, size_t *n, size_t *count,
                       int *is_array)
{
    lua_State *L = e->L;
    size_t max = 0, cnt = 0;
    int ints = 1;

    lua_pushnil(L);
    while (lua_next(L, idx)) {
        double d;
        if (++e->steps >= MOOR_CODEC_TICK) {
            e->steps = 0;
            if (e->tick && e->tick(L, MOOR_CODEC_TICK)) {
                lua_pop(L, 2);
                e->rc = MOOR_EHTIMEOUT;
                return MOOR_EHTIMEOUT;
            }
        }
        cnt++;
        if (lua_type(L, -2) == LUA_TNUMBER && (d = lua_tonumber(L, -2)) >= 1 && d == floor(d) &&
            d <= TWO53) {
            if ((size_t)d > max)
                max = (size_t)d;
        } else {
            ints = 0;
        }
        lua_pop(L, 1);
    }
    *n = max;
    *count = cnt;
    if (marked_array && !ints)
        return enc_fail(e, depth, MOOR_EINVAL, "cannot encode %s",
                        "a moor.array with a non-integer key");
    *is_array = marked_array || (ints && max == cnt);
    return 0;
}

static int enc_array(enc_t *e, int idx, int depth, size_t n)
{
    lua_State *L = e->L;
    int rc;

    if (n > UINT32_MAX || msgpack_pack_array(&e->pk, n))
        return MOOR_ENOMEM;
    for (size_t i = 1; i <= n; i++) {
        lua_rawgeti(L, idx, (int)i);
        rc = enc_value(e, lua_gettop(L), depth, 0);
        if (rc) {
            lua_pushnumber(L, (double)i);
            name_segment(e, depth, lua_gettop(L));
            lua_pop(L, 2);
            return rc;
        }
        lua_pop(L, 1);
    }
    return 0;
}

static int enc_map(enc_t *e, int idx, int depth, size_t count)
{
    lua_State *L = e->L;
    int rc;

    if (count > UINT32_MAX || msgpack_pack_map(&e->pk, count))
        return MOOR_ENOMEM;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        int top = lua_gettop(L);
        rc = enc_value(e, top - 1, depth, 0);
        if (rc == 0)
            rc = enc_value(e, top, depth, 0);
        if (rc) {
            name_segment(e, depth, top - 1);
            lua_pop(L, 2);
            return rc;
        }
        lua_pop(L, 1);
    }
    return 0;
}

static int enc_marked(enc_t *e, int idx, int depth, const void *mt)
{
    lua_State *L = e->L;
    size_t n;
    const char *s;
    int rc;

    if (mt == e->mt_bin) {
        lua_rawgeti(L, idx, 1);
        s = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &n) : NULL;
        rc = s ? pack_bytes(e, s, n, 1)
               : enc_fail(e, depth, MOOR_EINVAL, "cannot encode %s", "a moor.bin without a string");
        lua_pop(L, 1);
        return rc;
    }
    /* ext */
    lua_getfield(L, idx, "ext");
    lua_getfield(L, idx, "data");
    if (lua_type(L, -2) != LUA_TNUMBER || lua_type(L, -1) != LUA_TSTRING ||
        lua_tonumber(L, -2) < -128 || lua_tonumber(L, -2) > 127) {
        lua_pop(L, 2);
        return enc_fail(e, depth, MOOR_EINVAL, "cannot encode %s",
                        "a moor.ext without ext (type -128..127) and data (string)");
    }
    s = lua_tolstring(L, -1, &n);
    if (over_max(e, n + (n == 1 || n == 2 || n == 4 || n == 8 || n == 16 ? 2
                         : n < 256                                       ? 3
                         : n < 65536                                     ? 4
                                                                         : 6))) {
        lua_pop(L, 2);
        return MOOR_EVALTOOBIG;
    }
    rc = msgpack_pack_ext(&e->pk, n, (int8_t)lua_tonumber(L, -2)) ||
                 msgpack_pack_ext_body(&e->pk, s, n)
             ? MOOR_ENOMEM
             : 0;
    lua_pop(L, 2);
    return rc;
}

static int enc_table(enc_t *e, int idx, int depth, int as_map)
{
    lua_State *L = e->L;
    const void *self = lua_topointer(L, idx), *mt = NULL;
    size_t n, count;
    int is_array, rc;

    if (!lua_checkstack(L, 8))
        return MOOR_ENOMEM;
    if (lua_getmetatable(L, idx)) {
        mt = lua_topointer(L, -1);
        lua_pop(L, 1);
    }
    /* A moor.bin or an ext is one scalar on the wire: it takes no level
     * (decode made one at the 64th level of a frame; it must encode back). */
    if (mt && (mt == e->mt_bin || mt == e->mt_ext))
        return enc_marked(e, idx, depth, mt);
    if (depth + 1 > MOOR_CODEC_MAX_DEPTH)
        return enc_fail(e, depth, MOOR_EINVAL, "cannot encode %s",
                        "tables nested deeper than 64 levels");
    for (int i = 0; i < depth; i++)
        if (e->path[i] == self)
            return enc_fail(e, depth, MOOR_EINVAL, "cannot encode %s",
                            "a cycle (a table that contains itself)");
    e->path[depth] = self;
    rc = table_shape(e, idx, depth, mt && mt == e->mt_array, &n, &count, &is_array);
    if (rc)
        return rc;
    if (as_map || (mt && mt == e->mt_map))
        is_array = 0;
    return is_array ? enc_array(e, idx, depth + 1, n) : enc_map(e, idx, depth + 1, count);
}

static int enc_value(enc_t *e, int idx, int depth, int as_map)
{
    lua_State *L = e->L;
    size_t n;
    const char *s;
    int t = lua_type(L, idx);

    if (over_max(e, 0))
        return MOOR_EVALTOOBIG;
    if (++e->steps >= MOOR_CODEC_TICK) {
        e->steps = 0;
        if (e->tick && e->tick(L, MOOR_CODEC_TICK)) {
            e->rc = MOOR_EHTIMEOUT;
            return MOOR_EHTIMEOUT;
        }
    }
    switch (t) {
    case LUA_TNIL: return msgpack_pack_nil(&e->pk) ? MOOR_ENOMEM : 0;
    case LUA_TBOOLEAN:
        return (lua_toboolean(L, idx) ? msgpack_pack_true(&e->pk) : msgpack_pack_false(&e->pk))
                   ? MOOR_ENOMEM
                   : 0;
    case LUA_TNUMBER: return enc_number(e, lua_tonumber(L, idx));
    case LUA_TSTRING:
        s = lua_tolstring(L, idx, &n);
        return pack_bytes(e, s, n, !moor_utf8_valid(s, n));
    case LUA_TTABLE: return enc_table(e, idx, depth, as_map);
    case LUA_TCDATA_: return enc_cdata(e, idx, depth);
    case LUA_TFUNCTION: return enc_fail(e, depth, MOOR_EINVAL, "cannot encode %s", "a function");
    case LUA_TTHREAD: return enc_fail(e, depth, MOOR_EINVAL, "cannot encode %s", "a thread");
    default: return enc_fail(e, depth, MOOR_EINVAL, "cannot encode a %s", lua_typename(L, t));
    }
}

int moor_codec_encode(lua_State *L, int idx, int as_map, moor_buf_t *out)
{
    return moor_codec_encode_max(L, idx, as_map, SIZE_MAX, out);
}

/* One enc_t kept per thread for the next encode: at ~3 KiB it is past
 * malloc's small-size caches, and a malloc/free pair per encode was a few
 * percent of a trivial handler call.  An encode nested in another (none
 * today: encoding runs no user code) finds it taken and allocates. */
static _Thread_local enc_t *spare_enc;

int moor_codec_encode_max(lua_State *L, int idx, int as_map, size_t max, moor_buf_t *out)
{
    enc_t *e = spare_enc ? spare_enc : malloc(sizeof(*e)); /* off the C stack */
    char where[MOOR_CODEC_MAX_DEPTH * 40 + 1];
    size_t wl = 0;
    int rc, top = lua_gettop(L);
    limits_t *lim = get_limits(L);

    if (!e)
        return MOOR_ENOMEM;
    spare_enc = NULL;
    if (idx < 0)
        idx = top + idx + 1;
    e->L = L;
    e->rc = 0;
    e->err_depth = 0;
    e->out = out;
    e->start = out->len;
    e->max = max;
    e->tick = lim ? lim->tick : NULL;
    e->steps = 0;
    if (lim && lim->mt_array) {
        e->mt_array = lim->mt_array, e->mt_map = lim->mt_map;
        e->mt_bin = lim->mt_bin, e->mt_ext = lim->mt_ext;
    } else {
        e->mt_array = reg_ptr(L, &k_array);
        e->mt_map = reg_ptr(L, &k_map);
        e->mt_bin = reg_ptr(L, &k_bin);
        e->mt_ext = reg_ptr(L, &k_ext);
    }
    moor_mp_packer_init(&e->pk, out);
    rc = enc_value(e, idx, 0, as_map && lua_type(L, idx) == LUA_TTABLE);
    if (rc == 0 && over_max(e, 0))
        rc = MOOR_EVALTOOBIG;
    lua_settop(L, top);
    if (rc == MOOR_EINVAL) {
        where[0] = '\0';
        for (int d = 1; d <= e->err_depth && wl < sizeof(where) - 1; d++)
            wl += (size_t)snprintf(where + wl, sizeof(where) - wl, "%s", e->seg[d]);
        if (wl)
            moor_diag(rc, "%s at %s", e->what, where);
        else
            moor_diag(rc, "%s", e->what);
    } else if (rc == MOOR_EVALTOOBIG) {
        moor_diag(rc, "the encoding is larger than %zu bytes", max);
    } else if (rc == MOOR_EHTIMEOUT) {
        moor_diag(rc, "stopped while encoding: over its budget");
    } else if (rc) {
        moor_diag(rc, "out of memory while encoding");
    }
    if (!spare_enc)
        spare_enc = e;
    else
        free(e);
    return rc;
}

/* ---- decoding --------------------------------------------------------------- */

typedef struct dec {
    lua_State *L;
    moor_codec_tick_fn tick; /* NULL: no budget */
    unsigned steps;          /* values since the last tick */
} dec_t;

static int dec_value(dec_t *d, const char **p, const char *end);

static int push_int64(lua_State *L, uint64_t bits, int is_signed)
{
    reg_get(L, &k_make);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return moor_diag(MOOR_EINVAL, "a 64-bit integer beyond 2^53 needs LuaJIT's ffi");
    }
    lua_pushnumber(L, (double)(bits >> 32));
    lua_pushnumber(L, (double)(bits & 0xffffffffu));
    lua_pushboolean(L, is_signed);
    if (lua_pcall(L, 3, 1, 0)) {
        lua_pop(L, 1);
        return moor_diag(MOOR_EINVAL, "cannot make a 64-bit integer cdata");
    }
    return 0;
}

static int dec_int(lua_State *L, const char **p, const char *end, int type)
{
    if (type == MOOR_MP_UINT) {
        uint64_t u;
        if (moor_mp_read_uint(p, end, &u))
            return MOOR_EPROTO;
        if (u <= (uint64_t)1 << 53) {
            lua_pushnumber(L, (double)u);
            return 0;
        }
        return push_int64(L, u, 0);
    } else {
        int64_t s;
        if (moor_mp_read_int(p, end, &s))
            return MOOR_EPROTO;
        if (s >= -((int64_t)1 << 53) && s <= (int64_t)1 << 53) {
            lua_pushnumber(L, (double)s);
            return 0;
        }
        return push_int64(L, (uint64_t)s, 1);
    }
}

static void set_marker(lua_State *L, const char *key)
{
    reg_get(L, key);
    lua_setmetatable(L, -2);
}

static int dec_array(dec_t *d, const char **p, const char *end)
{
    lua_State *L = d->L;
    uint32_t n;
    int rc;

    if (moor_mp_read_array(p, end, &n))
        return MOOR_EPROTO;
    lua_createtable(L, (int)(n > 1u << 20 ? 1u << 20 : n), 0);
    for (uint32_t i = 1; i <= n; i++) {
        if ((rc = dec_value(d, p, end))) {
            lua_pop(L, 1);
            return rc;
        }
        lua_rawseti(L, -2, (int)i);
    }
    set_marker(L, &k_array);
    return 0;
}

static int dec_map(dec_t *d, const char **p, const char *end)
{
    lua_State *L = d->L;
    uint32_t n;
    int rc;

    if (moor_mp_read_map(p, end, &n))
        return MOOR_EPROTO;
    lua_createtable(L, 0, (int)(n > 1u << 20 ? 1u << 20 : n));
    for (uint32_t i = 0; i < n; i++) {
        if ((rc = dec_value(d, p, end))) {
            lua_pop(L, 1);
            return rc;
        }
        if (lua_isnil(L, -1) || (lua_type(L, -1) == LUA_TNUMBER && isnan(lua_tonumber(L, -1)))) {
            const char *what = lua_isnil(L, -1) ? "nil" : "NaN";
            lua_pop(L, 2);
            return moor_diag(MOOR_EINVAL, "a map key is %s, which a Lua table cannot hold", what);
        }
        if ((rc = dec_value(d, p, end))) {
            lua_pop(L, 2);
            return rc;
        }
        lua_rawset(L, -3);
    }
    set_marker(L, &k_map);
    return 0;
}

static int dec_ext(lua_State *L, const char **p, const char *end)
{
    const unsigned char *q = (const unsigned char *)*p;
    size_t hlen, n;

    switch (q[0]) {
    case 0xd4:
    case 0xd5:
    case 0xd6:
    case 0xd7:
    case 0xd8: hlen = 2, n = (size_t)1 << (q[0] - 0xd4); break;
    case 0xc7: hlen = 3, n = q[1]; break;
    case 0xc8: hlen = 4, n = ((size_t)q[1] << 8) | q[2]; break;
    default: hlen = 6, n = ((size_t)q[1] << 24) | ((size_t)q[2] << 16) | ((size_t)q[3] << 8) | q[4];
    }
    if ((size_t)(end - *p) < hlen + n) /* moor_mp_skip checked it; be safe anyway */
        return MOOR_EPROTO;
    lua_createtable(L, 0, 2);
    lua_pushnumber(L, (double)(int8_t)q[hlen - 1]);
    lua_setfield(L, -2, "ext");
    lua_pushlstring(L, *p + hlen, n);
    lua_setfield(L, -2, "data");
    set_marker(L, &k_ext);
    *p += hlen + n;
    return 0;
}

static int dec_value(dec_t *d, const char **p, const char *end)
{
    lua_State *L = d->L;
    int t = moor_mp_peek(*p, end), v;
    const char *s;
    uint32_t n;
    double x;

    if (!lua_checkstack(L, 4))
        return moor_diag(MOOR_ENOMEM, "Lua stack exhausted while decoding");
    if (++d->steps >= MOOR_CODEC_TICK) {
        d->steps = 0;
        if (d->tick && d->tick(L, MOOR_CODEC_TICK))
            return moor_diag(MOOR_EHTIMEOUT, "stopped while decoding: over its budget");
    }
    switch (t) {
    case MOOR_MP_NIL: (*p)++, lua_pushnil(L); return 0;
    case MOOR_MP_BOOL:
        if (moor_mp_read_bool(p, end, &v))
            return MOOR_EPROTO;
        lua_pushboolean(L, v);
        return 0;
    case MOOR_MP_UINT:
    case MOOR_MP_INT: return dec_int(L, p, end, t);
    case MOOR_MP_FLOAT:
        if (moor_mp_read_double(p, end, &x))
            return MOOR_EPROTO;
        lua_pushnumber(L, x);
        return 0;
    case MOOR_MP_STR:
    case MOOR_MP_BIN:
        if (moor_mp_read_strbin(p, end, &s, &n))
            return MOOR_EPROTO;
        lua_pushlstring(L, s, n);
        return 0;
    case MOOR_MP_ARRAY: return dec_array(d, p, end);
    case MOOR_MP_MAP: return dec_map(d, p, end);
    case MOOR_MP_EXT: return dec_ext(L, p, end);
    default: return MOOR_EPROTO;
    }
}

int moor_codec_decode(lua_State *L, const char **p, const char *end)
{
    const char *q = *p;
    int rc = moor_mp_skip(&q, end, MOOR_CODEC_MAX_DEPTH);
    limits_t *lim;
    dec_t d;

    if (rc == MOOR_EAGAIN)
        return moor_diag(rc, "truncated MessagePack");
    if (rc)
        return moor_diag(MOOR_EPROTO, "malformed MessagePack (or nested deeper than %d levels)",
                         MOOR_CODEC_MAX_DEPTH);
    end = q; /* the object is valid and ends here */
    lim = get_limits(L);
    d.L = L;
    d.tick = lim ? lim->tick : NULL;
    d.steps = 0;
    q = *p;
    rc = dec_value(&d, p, end);
    if (rc)
        *p = q; /* a failure leaves the cursor where it was */
    if (rc == MOOR_EPROTO)
        return moor_diag(rc, "malformed MessagePack");
    return rc;
}

/* ---- Lua functions ------------------------------------------------------------ */

/* encode(v) -> string | nil, err */
static int l_encode(lua_State *L)
{
    moor_buf_t b = MOOR_BUF_INIT;
    int rc;

    limits_t *lim = get_limits(L);

    lua_settop(L, 1);
    rc = moor_codec_encode_max(L, 1, 0, lim && lim->encode_max ? lim->encode_max : SIZE_MAX, &b);
    if (rc) {
        moor_buf_free(&b);
        lua_pushnil(L);
        lua_pushstring(L, moor_diag_msg(rc));
        return 2;
    }
    lua_pushlstring(L, b.data ? b.data : "", b.len); /* may raise: b leaks only on OOM */
    moor_buf_free(&b);
    return 1;
}

/* decode(s [, pos]) -> value, next_pos | nil, err.  pos is 1-based. */
static int l_decode(lua_State *L)
{
    size_t n;
    const char *s = luaL_checklstring(L, 1, &n), *p;
    lua_Integer pos = luaL_optinteger(L, 2, 1);
    int rc;

    if (pos < 1 || (size_t)pos > n + 1)
        return luaL_argerror(L, 2, "position out of range");
    p = s + pos - 1;
    rc = moor_codec_decode(L, &p, s + n);
    if (rc) {
        lua_pushnil(L);
        lua_pushstring(L, moor_diag_msg(rc));
        return 2;
    }
    lua_pushinteger(L, (lua_Integer)(p - s) + 1);
    return 2;
}

static int is_marker(lua_State *L, int idx)
{
    static const char *const keys[] = {&k_array, &k_map, &k_bin, &k_ext};
    int found = 0;

    for (int i = 0; i < 4 && !found; i++) {
        reg_get(L, keys[i]);
        found = lua_rawequal(L, idx, -1);
        lua_pop(L, 1);
    }
    return found;
}

static int mark(lua_State *L, const char *key)
{
    if (lua_isnoneornil(L, 1)) {
        lua_settop(L, 0);
        lua_newtable(L);
    }
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    if (lua_getmetatable(L, 1)) { /* 2 */
        lua_pushliteral(L, "__metatable");
        lua_rawget(L, 2);
        if (!lua_isnil(L, -1) && !is_marker(L, 2))
            return luaL_error(L, "cannot change a protected metatable");
        lua_settop(L, 1);
    }
    set_marker(L, key);
    return 1;
}

static int l_array(lua_State *L)
{
    return mark(L, &k_array);
}
static int l_map(lua_State *L)
{
    return mark(L, &k_map);
}

static int l_bin(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TSTRING);
    lua_createtable(L, 1, 0);
    lua_pushvalue(L, 1);
    lua_rawseti(L, -2, 1);
    set_marker(L, &k_bin);
    return 1;
}

static int l_ext(lua_State *L)
{
    lua_Number t = luaL_checknumber(L, 1);

    luaL_checktype(L, 2, LUA_TSTRING);
    luaL_argcheck(L, t >= -128 && t <= 127 && t == floor(t), 1, "ext type must be -128..127");
    lua_createtable(L, 0, 2);
    lua_pushnumber(L, t);
    lua_setfield(L, -2, "ext");
    lua_pushvalue(L, 2);
    lua_setfield(L, -2, "data");
    set_marker(L, &k_ext);
    return 1;
}

void moor_codec_register(lua_State *L)
{
    static const luaL_Reg fns[] = {{"encode", l_encode}, {"decode", l_decode}, {"array", l_array},
                                   {"map", l_map},       {"bin", l_bin},       {"ext", l_ext},
                                   {NULL, NULL}};

    for (const luaL_Reg *f = fns; f->name; f++) {
        lua_pushcfunction(L, f->func);
        lua_setfield(L, -2, f->name);
    }
}
