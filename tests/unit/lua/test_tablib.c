/*
 * test_tablib.c -- the sandbox's table.sort, move, insert and remove
 * (core/lua/tablib.c) against LuaJIT's own, and their budget.
 *
 * TEST: a plain LuaJIT state holds both (`table` is LuaJIT's, `mine` has
 * tablib.c's).  Random arrays (numbers with duplicates, strings, mixed
 * types that cannot be compared, with and without a comparator, one that
 * raises) are sorted by both: the same outcome, and on success the same
 * order (a total order on the values, so instability cannot show).  Moves
 * over random, overlapping ranges compare whole tables.  Seeded (printed;
 * MOOR_SEED replays).  Then the budget: table.move over 2^27 slots and a
 * sort of 300,000 numbers stop under a budget of 10^5 instructions.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua/lua_internal.h"
#include "testutil.h"
#include "util/clock.h"

static uint64_t seed;

static const char compare_script[] =
    "local mine, seed = ...\n"
    "math.randomseed(seed % 2147483647)\n"
    "local R = math.random\n"
    "local function array(kind, n)\n"
    "  local t = {}\n"
    "  for i = 1, n do\n"
    "    if kind == 1 then t[i] = R(1, 20)\n"
    "    elseif kind == 2 then t[i] = string.char(R(97, 100), R(97, 100))\n"
    "    elseif kind == 3 then t[i] = R(2) == 1 and R(9) or 'x'\n"
    "    else t[i] = R() end\n"
    "  end\n"
    "  return t\n"
    "end\n"
    "local function copy(t) local c = {} for k, v in pairs(t) do c[k] = v end return c end\n"
    "local function same(a, b)\n"
    "  for k, v in pairs(a) do if b[k] ~= v then return false end end\n"
    "  for k, v in pairs(b) do if a[k] ~= v then return false end end\n"
    "  return true\n"
    "end\n"
    "local cmps = { false, function(a, b) return a > b end,\n"
    "  function(a, b) if a == 7 or b == 7 then error('seven') end return a < b end }\n"
    "for case = 1, 3000 do\n"
    "  local t = array(R(4), R(0, 60))\n"
    "  local cmp = cmps[R(#cmps)] or nil\n"
    "  local a, b = copy(t), copy(t)\n"
    "  local ok1 = pcall(table.sort, a, cmp)\n"
    "  local ok2 = pcall(mine.sort, b, cmp)\n"
    "  if ok1 ~= ok2 or (ok1 and not same(a, b)) then\n"
    "    error('sort case ' .. case .. ' differs: ' .. table.concat(t, ','), 0)\n"
    "  end\n"
    "end\n"
    "for case = 1, 3000 do\n"
    "  local t = array(1, R(0, 20))\n"
    "  local f, e, to = R(-2, 22), R(-2, 22), R(-2, 22)\n"
    "  local other = R(2) == 1\n"
    "  local a, b = copy(t), copy(t)\n"
    "  local da, db = other and {} or a, other and {} or b\n"
    "  table.move(a, f, e, to, da)\n"
    "  mine.move(b, f, e, to, db)\n"
    "  if not same(da, db) or not same(a, b) then\n"
    "    error(string.format('move case %d (%d, %d, %d) differs', case, f, e, to), 0)\n"
    "  end\n"
    "end\n"
    "local a, b = {1, 2, 3}, {1, 2, 3}\n"
    "table.insert(a, 2, 'x'); mine.insert(b, 2, 'x'); assert(same(a, b))\n"
    "assert(table.remove(a) == mine.remove(b)); assert(same(a, b))\n"
    "assert(not pcall(mine.insert, {}, 1, 2, 3))\n"
    "return 'ok'\n";

static lua_State *new_state(void)
{
    lua_State *L = luaL_newstate();

    luaL_openlibs(L);
    lua_newtable(L);
    lua_getglobal(L, "table");
    lua_getfield(L, -1, "insert");
    lua_setfield(L, -3, "insert");
    lua_getfield(L, -1, "remove");
    lua_setfield(L, -3, "remove");
    lua_pop(L, 1);
    moor_tablib_register(L, -1);
    return L;
}

static void test_against_luajit(void **state)
{
    lua_State *L = new_state();

    (void)state;
    if (luaL_loadstring(L, compare_script))
        fail_msg("script: %s", lua_tostring(L, -1));
    lua_insert(L, -2);
    lua_pushnumber(L, (double)(seed % 2147483647u));
    if (lua_pcall(L, 2, 1, 0))
        fail_msg("seed %llu: %s", (unsigned long long)seed, lua_tostring(L, -1));
    assert_string_equal(lua_tostring(L, -1), "ok");
    lua_close(L);
}

static void test_budget_stops_sort_and_move(void **state)
{
    static const struct {
        const char *setup, *run; /* setup runs before the budget starts */
    } cases[] = {
        {"", "mine.move({}, 1, 2^27, 1)"},
        {"t = {} for i = 1, 300000 do t[i] = (i * 7919) % 1000003 end", "mine.sort(t)"},
        {"t = {} for i = 1, 300000 do t[i] = i end",
         "mine.sort(t, function(a, b) return a > b end)"},
    };
    lua_State *L = new_state();

    (void)state;
    lua_setglobal(L, "mine");
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        moor_budget_t b, *prev;
        uint64_t t0;
        int rc;

        assert_int_equal(luaL_dostring(L, cases[i].setup), 0);
        assert_int_equal(luaL_loadstring(L, cases[i].run), 0);
        moor_budget_init(&b, 100000, 600000, NULL);
        t0 = moor_clock_mono_ms();
        prev = moor_budget_enter(L, &b, 0);
        rc = lua_pcall(L, 0, 0, 0);
        moor_budget_leave(L, prev);
        printf("%s: stopped after %llu steps charged, %llu ms\n", cases[i].run,
               (unsigned long long)b.used, (unsigned long long)(moor_clock_mono_ms() - t0));
        if (rc == 0 || !strstr(lua_tostring(L, -1), "over its instruction budget"))
            fail_msg("%s: expected a stop, got rc %d: %s", cases[i].run, rc,
                     rc ? lua_tostring(L, -1) : "(done)");
        assert_true(b.used < 1000000);
        lua_pop(L, 1);
    }
    lua_close(L);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_against_luajit),
        cmocka_unit_test(test_budget_stops_sort_and_move),
    };

    seed = testutil_seed("test_tablib");
    return cmocka_run_group_tests(tests, NULL, NULL);
}
