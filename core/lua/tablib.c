/*
 * tablib.c -- the sandbox's table.sort, table.move, table.insert and
 * table.remove.
 *
 * Two reasons to replace LuaJIT's: they write with raw sets, which would
 * bypass the read-only proxies of the sandbox (sandbox.c), so each refuses
 * a read-only table; and sort and move loop in C, where the count hook
 * never fires (LuaJIT's sort of a few million numbers, or table.move over
 * 2^27 empty slots, holds the loop for seconds).  sort is an introsort
 * (quicksort with a median-of-three pivot, heapsort past 2 log2 n levels,
 * insertion sort for short runs) that charges every comparison to the
 * call's budget; move charges every element.  Both behave as LuaJIT's do
 * otherwise: raw reads and writes, "attempt to compare ..." from the
 * default order, the comparator's errors passed on, no error for an
 * inconsistent comparator (the order is then unspecified), and sort is
 * not stable.  insert and remove are LuaJIT's own behind the read-only
 * check: their work is bounded by the table's size, which the memory
 * limit bounds.
 *
 * Threads: whichever thread runs the Lua state; no globals.
 */
#include <lauxlib.h>
#include <lua.h>

#include "lua_internal.h"

#define TAB_TICK 1024
#define SHORT_RUN 12

static void check_writable(lua_State *L, int idx, const char *fname)
{
    luaL_checktype(L, idx, LUA_TTABLE);
    if (moor_sandbox_readonly(L, idx))
        luaL_error(L, "table.%s: the table is read-only", fname);
}

/* ---- sort ------------------------------------------------------------------ */

typedef struct sorter {
    lua_State *L;
    int has_cmp;    /* the comparator is at stack index 2 */
    unsigned steps; /* since the budget was last charged */
} sorter_t;

static void sort_tick(sorter_t *st)
{
    if (++st->steps >= TAB_TICK) {
        st->steps = 0;
        moor_budget_tick(st->L, TAB_TICK);
    }
}

/* a < b for the values at stack indices a and b. */
static int less(sorter_t *st, int a, int b)
{
    lua_State *L = st->L;
    int r;

    sort_tick(st);
    if (!st->has_cmp)
        return lua_lessthan(L, a, b);
    if (a < 0)
        a = lua_gettop(L) + a + 1;
    if (b < 0)
        b = lua_gettop(L) + b + 1;
    lua_pushvalue(L, 2);
    lua_pushvalue(L, a);
    lua_pushvalue(L, b);
    lua_call(L, 2, 1);
    r = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return r;
}

/* t[i] < t[j] */
static int less_at(sorter_t *st, int i, int j)
{
    int r;

    lua_rawgeti(st->L, 1, i);
    lua_rawgeti(st->L, 1, j);
    r = less(st, -2, -1);
    lua_pop(st->L, 2);
    return r;
}

static void swap(lua_State *L, int i, int j)
{
    lua_rawgeti(L, 1, i);
    lua_rawgeti(L, 1, j);
    lua_rawseti(L, 1, i);
    lua_rawseti(L, 1, j);
}

static void insertion_sort(sorter_t *st, int lo, int hi)
{
    lua_State *L = st->L;

    for (int i = lo + 1; i <= hi; i++) {
        int j = i - 1, v;
        lua_rawgeti(L, 1, i);
        v = lua_gettop(L);
        for (; j >= lo; j--) {
            lua_rawgeti(L, 1, j);
            if (!less(st, v, v + 1)) {
                lua_pop(L, 1);
                break;
            }
            lua_rawseti(L, 1, j + 1);
        }
        lua_rawseti(L, 1, j + 1);
    }
}

/* Restores the heap property below root in the heap t[lo..end]. */
static void sift_down(sorter_t *st, int lo, int root, int end)
{
    for (;;) {
        int child = lo + 2 * (root - lo) + 1;
        if (child > end)
            return;
        if (child + 1 <= end && less_at(st, child, child + 1))
            child++;
        if (!less_at(st, root, child))
            return;
        swap(st->L, root, child);
        root = child;
    }
}

static void heap_sort(sorter_t *st, int lo, int hi)
{
    for (int start = lo + (hi - lo - 1) / 2; start >= lo; start--)
        sift_down(st, lo, start, hi);
    for (int end = hi; end > lo; end--) {
        swap(st->L, lo, end);
        sift_down(st, lo, lo, end - 1);
    }
}

/* Orders t[lo], t[mid], t[hi] and moves the median to hi - 1; partitions
 * t[lo..hi] around it and returns the pivot's final place. */
static int partition(sorter_t *st, int lo, int hi)
{
    lua_State *L = st->L;
    int mid = lo + (hi - lo) / 2, i = lo, pv;

    if (less_at(st, mid, lo))
        swap(L, mid, lo);
    if (less_at(st, hi, mid)) {
        swap(L, hi, mid);
        if (less_at(st, mid, lo))
            swap(L, mid, lo);
    }
    swap(L, mid, hi - 1);
    lua_rawgeti(L, 1, hi - 1);
    pv = lua_gettop(L);
    for (int j = lo; j < hi - 1; j++) {
        lua_rawgeti(L, 1, j);
        if (less(st, pv + 1, pv)) {
            lua_pop(L, 1);
            swap(L, i, j);
            i++;
        } else {
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 1);
    swap(L, i, hi - 1);
    return i;
}

static void intro_sort(sorter_t *st, int lo, int hi, int depth)
{
    while (hi - lo >= SHORT_RUN) {
        int p;
        if (depth-- == 0) {
            heap_sort(st, lo, hi);
            return;
        }
        p = partition(st, lo, hi);
        /* recurse into the smaller side, loop on the larger */
        if (p - lo < hi - p) {
            intro_sort(st, lo, p - 1, depth);
            lo = p + 1;
        } else {
            intro_sort(st, p + 1, hi, depth);
            hi = p - 1;
        }
    }
    insertion_sort(st, lo, hi);
}

static int l_sort(lua_State *L)
{
    sorter_t st = {L, 0, 0};
    size_t n;
    int depth = 0;

    check_writable(L, 1, "sort");
    n = lua_objlen(L, 1);
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TFUNCTION);
        st.has_cmp = 1;
    }
    lua_settop(L, 2);
    luaL_checkstack(L, 8, "table.sort");
    if (n > (size_t)INT32_MAX)
        return luaL_error(L, "table.sort: the table is too long");
    for (size_t m = n; m > 1; m >>= 1)
        depth += 2;
    if (n > 1)
        intro_sort(&st, 1, (int)n, depth);
    return 0;
}

/* ---- move ------------------------------------------------------------------ */

static void move_one(lua_State *L, int dst, lua_Number from, lua_Number to)
{
    lua_pushnumber(L, from);
    lua_rawget(L, 1);
    lua_pushnumber(L, to);
    lua_insert(L, -2);
    lua_rawset(L, dst);
}

/* table.move(a1, f, e, t [, a2]) -> a2: a2[t..] = a1[f..e], raw. */
static int l_move(lua_State *L)
{
    lua_Number f, e, t, n;
    int dst = lua_isnoneornil(L, 5) ? 1 : 5;
    unsigned steps = 0;

    luaL_checktype(L, 1, LUA_TTABLE);
    f = (lua_Number)luaL_checkinteger(L, 2);
    e = (lua_Number)luaL_checkinteger(L, 3);
    t = (lua_Number)luaL_checkinteger(L, 4);
    check_writable(L, dst, "move");
    n = e - f;
    if (e >= f) {
        int forward = t > e || t <= f || (dst != 1 && !lua_rawequal(L, 1, dst));
        for (lua_Number i = 0; i <= n; i++) {
            if (++steps >= TAB_TICK) {
                steps = 0;
                moor_budget_tick(L, TAB_TICK);
            }
            if (forward)
                move_one(L, dst, f + i, t + i);
            else
                move_one(L, dst, e - i, t + n - i);
        }
    }
    lua_pushvalue(L, dst);
    return 1;
}

/* ---- insert, remove: the original behind the read-only check ------------------ */

/* Upvalues: 1 = the original function, 2 = its name. */
static int l_guarded(lua_State *L)
{
    check_writable(L, 1, lua_tostring(L, lua_upvalueindex(2)));
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    return lua_gettop(L);
}

void moor_tablib_register(lua_State *L, int idx)
{
    static const char *const guarded[] = {"insert", "remove", NULL};

    if (idx < 0)
        idx = lua_gettop(L) + idx + 1;
    lua_pushcfunction(L, l_sort);
    lua_setfield(L, idx, "sort");
    lua_pushcfunction(L, l_move);
    lua_setfield(L, idx, "move");
    for (const char *const *g = guarded; *g; g++) {
        lua_getfield(L, idx, *g);
        lua_pushstring(L, *g);
        lua_pushcclosure(L, l_guarded, 2);
        lua_setfield(L, idx, *g);
    }
}
