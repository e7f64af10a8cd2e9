/*
 * fuzz_codec.c -- libFuzzer target for the Lua codec (core/lua/codec.c):
 * untrusted MessagePack decoded into Lua values and encoded back, as
 * handler arguments, kv answers and moor.decode see it.
 *
 * The input is read as a sequence of objects.  For each: decoding either
 * fails with MOOR_EAGAIN, MOOR_EPROTO or MOOR_EINVAL, pushing nothing and
 * leaving the cursor where it was, or pushes exactly one value and
 * advances.  A decoded value must encode (the mapping of codec.h covers
 * everything decode makes), and the round trip keeps it: decode(encode(v))
 * is equal to v (compared through a canonical text, since a map's entries
 * come out in table order) and encodes to as many bytes.  An encode
 * bounded by a size from the input succeeds with the same length when it
 * fits and fails with MOOR_EVALTOOBIG when it does not.
 *
 * TEST: a fresh Lua state per input, closed after it (LuaJIT's GC64
 * values carry type tags in a pointer's high bits, so LeakSanitizer would
 * take objects that live on between inputs for leaks), allocating through
 * budget.c's counting allocator (realloc-based, so ASan sees every Lua
 * object) with a cap, so no input can make the harness allocate without
 * bound: the work runs in a lua_cpcall, where a refused allocation is an
 * error, LUA_ERRMEM, which is allowed; any other Lua error is a bug.
 */
#include <lauxlib.h>
#include <lualib.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lua/codec.h"
#include "lua/lua_internal.h"
#include "util/err.h"

#define HEAP_CAP ((size_t)256 << 20)

/* canon(v): a text equal for equal values, map order aside. */
static const char canon_src[] =
    "local function canon(v)\n"
    "  local t = type(v)\n"
    "  if t == 'table' then\n"
    "    local mt, parts = getmetatable(v), {}\n"
    "    for k, x in pairs(v) do parts[#parts + 1] = canon(k) .. '=' .. canon(x) end\n"
    "    table.sort(parts)\n"
    "    return '{' .. tostring(mt and mt.__name) .. ':' .. table.concat(parts, ',') .. '}'\n"
    "  elseif t == 'string' then return string.format('%q', v)\n"
    "  elseif t == 'number' then\n"
    "    if v ~= v then return 'nan' end\n"
    "    return string.format('%.17g', v) .. (1 / v < 0 and '-' or '+')\n"
    "  end\n"
    "  return t .. ':' .. tostring(v)\n"
    "end\n"
    "return canon\n";

static lua_State *L; /* the state of the input running now */
static int canon_ref;
static moor_heap_t heap;
static moor_budget_t budget; /* only for the heap cap: no instruction or time limit */

static void check(int ok)
{
    if (!ok)
        abort();
}

static void setup(void)
{
    memset(&heap, 0, sizeof(heap));
    heap.cap = HEAP_CAP;
    check((L = lua_newstate(moor_heap_alloc, &heap)) != NULL);
    luaL_openlibs(L);
    check(moor_codec_init(L) == 0);
    check(luaL_dostring(L, canon_src) == 0);
    canon_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    moor_budget_init(&budget, UINT64_MAX / 2, UINT32_MAX, &heap);
}

/* Pushes canon(value at idx). */
static void push_canon(int idx)
{
    idx = idx < 0 ? lua_gettop(L) + idx + 1 : idx;
    lua_rawgeti(L, LUA_REGISTRYINDEX, canon_ref);
    lua_pushvalue(L, idx);
    lua_call(L, 1, 1);
}

static void round_trip(size_t bound)
{
    moor_buf_t a = MOOR_BUF_INIT, b = MOOR_BUF_INIT, c = MOOR_BUF_INIT;
    const char *p;
    int top = lua_gettop(L), rc;

    rc = moor_codec_encode(L, -1, 0, &a);
    check(rc == 0 && lua_gettop(L) == top);
    p = a.data;
    check(moor_codec_decode(L, &p, a.data + a.len) == 0 && p == a.data + a.len);
    check(moor_codec_encode(L, -1, 0, &b) == 0 && b.len == a.len);
    push_canon(-1);
    push_canon(top);
    check(lua_rawequal(L, -1, -2));
    lua_settop(L, top);
    rc = moor_codec_encode_max(L, -1, 0, bound, &c);
    if (a.len <= bound)
        check(rc == 0 && c.len == a.len);
    else
        check(rc == MOOR_EVALTOOBIG);
    check(lua_gettop(L) == top);
    moor_buf_free(&a), moor_buf_free(&b), moor_buf_free(&c);
}

typedef struct input {
    const char *p, *end;
    size_t bound;
} input_t;

/* lua_cpcall body: every object of the input. */
static int run(lua_State *Ls)
{
    input_t *in = lua_touserdata(Ls, 1);

    lua_pop(Ls, 1);
    while (in->p < in->end) {
        const char *start = in->p;
        int top = lua_gettop(L);
        int rc = moor_codec_decode(L, &in->p, in->end);
        if (rc) {
            check(rc == MOOR_EAGAIN || rc == MOOR_EPROTO || rc == MOOR_EINVAL);
            check(in->p == start && lua_gettop(L) == top);
            break;
        }
        check(in->p > start && in->p <= in->end && lua_gettop(L) == top + 1);
        round_trip(in->bound);
        lua_pop(L, 1);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    input_t in = {(const char *)data, (const char *)data + size, size ? (size_t)data[0] * 4 : 0};
    moor_budget_t *prev;
    int rc;

    setup();
    prev = moor_budget_enter(L, &budget, 1);
    rc = lua_cpcall(L, run, &in);
    moor_budget_leave(L, prev);
    check(rc == 0 || rc == LUA_ERRMEM);
    lua_close(L);
    check(heap.used == 0);
    L = NULL;
    return 0;
}
