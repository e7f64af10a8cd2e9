/*
 * test_pattern.c -- the sandbox's string.find/match/gmatch/gsub
 * (core/lua/pattern.c) against LuaJIT's own.
 *
 * TEST: a plain LuaJIT state holds both: `string` is LuaJIT's, `mine` has
 * pattern.c's functions.  A Lua script generates patterns (atoms, sets,
 * classes, quantifiers, anchors, captures, position captures,
 * back-references, %b, %f, and malformed ones) and subjects over a small
 * alphabet (with NUL and bytes >= 0x80), calls each function of both with
 * the same arguments under pcall and demands the same outcome: both fail,
 * or both succeed with equal results.  Seeded (the seed is printed;
 * MOOR_SEED replays it); MOOR_PATTERN_CASES scales the run.  Then the
 * budget: a catastrophic pattern, run under a budget of 10^6
 * instructions, stops with "over its instruction budget" in a few million
 * steps where LuaJIT's takes some 10^9.
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
    "local mine, seed, ncases = ...\n"
    "math.randomseed(seed % 2147483647)\n"
    "local R = math.random\n"
    "local atoms = { 'a', 'b', 'c', '.', '%a', '%d', '%s', '%w', '%A', '%S', '%p', '%x', '%z',\n"
    "  '%l', '%u', '%c', '%g', '%W', '[ab]', '[^a]', '[a-c]', '[%d_]', '[]]', '[^]a]', '[a-]',\n"
    "  '[%a-]', '%.', '%%', '%(', 'x', ' ', '%b()', '%bab', '%b\"\"', '%f[%w]', '%f[^%w]',\n"
    "  '%f[%z]', '()', '(', ')', '^', '$', '-', '*', '+', '?', '%1', '%2', '%0', '[', '%',\n"
    "  '[^', '%b', '%f', '%fa', '\\0', '\\200', '[\\0-a]', '%q' }\n"
    "local quants = { '*', '+', '-', '?' }\n"
    "local chars = { 'a', 'b', 'c', 'a', 'b', '1', '2', ' ', '_', '(', ')', 'x', '\\0', '\\200',\n"
    "  '.', '\"', '%', 'A', 'B', '\\t' }\n"
    "local function pattern(depth)\n"
    "  local parts = {}\n"
    "  if R(5) == 1 then parts[#parts + 1] = '^' end\n"
    "  for _ = 1, R(0, 5) do\n"
    "    if depth < 2 and R(6) == 1 then\n"
    "      parts[#parts + 1] = '(' .. pattern(depth + 1) .. ')'\n"
    "    else\n"
    "      parts[#parts + 1] = atoms[R(#atoms)]\n"
    "    end\n"
    "    if R(3) == 1 then parts[#parts + 1] = quants[R(#quants)] end\n"
    "  end\n"
    "  if R(6) == 1 then parts[#parts + 1] = '$' end\n"
    "  return table.concat(parts)\n"
    "end\n"
    "local function subject()\n"
    "  local t = {}\n"
    "  for i = 1, R(0, 12) do t[i] = chars[R(#chars)] end\n"
    "  return table.concat(t)\n"
    "end\n"
    "local function pack(...) return { n = select('#', ...), ... } end\n"
    "local function show(r)\n"
    "  local out = {}\n"
    "  for i = 1, r.n do out[i] = type(r[i]) == 'string' and string.format('%q', r[i]) or "
    "tostring(r[i]) end\n"
    "  return table.concat(out, ', ')\n"
    "end\n"
    "local stats = { ok = 0, err = 0 }\n"
    "local function same(what, f1, f2, ...)\n"
    "  local a, b = pack(pcall(f1, ...)), pack(pcall(f2, ...))\n"
    "  local equal = a[1] == b[1]\n"
    "  if equal and a[1] then\n"
    "    equal = a.n == b.n\n"
    "    for i = 2, a.n do equal = equal and a[i] == b[i] end\n"
    "  end\n"
    "  if not equal then\n"
    "    local args = pack(...)\n"
    "    error(string.format('%s(%s): LuaJIT gives {%s}, pattern.c gives {%s}', what, show(args),\n"
    "                        show(a), show(b)), 0)\n"
    "  end\n"
    "  if a[1] then stats.ok = stats.ok + 1 else stats.err = stats.err + 1 end\n"
    "end\n"
    "local function all(gmatch)\n"
    "  return function(s, p)\n"
    "    local out, n = {}, 0\n"
    "    for a, b, c in gmatch(s, p) do\n"
    "      n = n + 1\n"
    "      out[n] = tostring(a) .. '|' .. tostring(b) .. '|' .. tostring(c)\n"
    "      if n > 50 then break end\n"
    "    end\n"
    "    return table.concat(out, ';'), n\n"
    "  end\n"
    "end\n"
    "local inits = { 1, 2, -1, -3, 0, 5, 13, 100, -100 }\n"
    "local reps = { '', 'x', '%0', '%1', '<%1>', '%%', '%2', '%', '%a', '[%1|%0]' }\n"
    "local tbl = { a = 'A', b = false, ab = 5, ['1'] = 'one', [''] = 'E' }\n"
    "local calls = 0\n"
    "local function fn(a, b)\n"
    "  calls = calls + 1\n"
    "  if calls % 3 == 0 then return nil end\n"
    "  if calls % 3 == 1 then return '{' .. tostring(a) .. tostring(b) .. '}' end\n"
    "  return false\n"
    "end\n"
    "local maxes = { 0, 1, 2, -1, 2.5 }\n"
    "for _ = 1, ncases do\n"
    "  local p, s = pattern(0), subject()\n"
    "  same('find', string.find, mine.find, s, p)\n"
    "  same('find', string.find, mine.find, s, p, inits[R(#inits)])\n"
    "  same('find', string.find, mine.find, s, p, inits[R(#inits)], R(2) == 1)\n"
    "  same('match', string.match, mine.match, s, p)\n"
    "  same('match', string.match, mine.match, s, p, inits[R(#inits)])\n"
    "  same('gmatch', all(string.gmatch), all(mine.gmatch), s, p)\n"
    "  same('gsub', string.gsub, mine.gsub, s, p, reps[R(#reps)])\n"
    "  same('gsub', string.gsub, mine.gsub, s, p, reps[R(#reps)], maxes[R(#maxes)])\n"
    "  same('gsub', string.gsub, mine.gsub, s, p, tbl)\n"
    "  calls = 0; same('gsub', function(...) calls = 0; return string.gsub(...) end,\n"
    "                 function(...) calls = 0; return mine.gsub(...) end, s, p, fn)\n"
    "end\n"
    "return stats.ok, stats.err\n";

/* Fixed cases: documented semantics, including the LuaJIT-specific ones. */
static const char fixed_script[] =
    "local mine = ...\n"
    "local function eq(a, b, what) if a ~= b then error(what .. ': ' .. tostring(a) .. ' ~= ' .. "
    "tostring(b), 2) end end\n"
    "eq(select(2, mine.gsub('hello world', '%w+', '%0 %0')), 2, 'gsub count')\n"
    "eq(mine.gsub('hello world', '(%w+)', '<%1>'), '<hello> <world>', 'captures')\n"
    "eq(mine.gsub('abc', '', '-'), '-a-b-c-', 'empty matches')\n"
    "eq(mine.gsub('abc', '%w*', '-'), '--', 'empty match at the end')\n"
    "eq(mine.gsub('abc', 'b', '%'), 'a\\0c', 'a final % adds NUL (as LuaJIT)')\n"
    "eq(mine.gsub('abc', 'b', '%x'), 'axc', '% before a non-digit')\n"
    "eq(select(2, mine.find('xa\\0b', 'a\\0c.')), 2, 'a pattern ends at its NUL')\n"
    "eq(mine.find('a\\0b', 'a\\0b'), 1, 'plain find sees the NUL')\n"
    "eq(mine.find('abc', '', 10), 4, 'init past the end is clamped')\n"
    "eq(mine.find('a+c', '+'), 2, 'no specials: plain')\n"
    "eq(mine.match('  x', '()x()'), 3, 'position capture')\n"
    "eq(mine.match('THE (quick) fox', '%((%a+)%)'), 'quick', 'escaped parens')\n"
    "eq(mine.match('f(a(b)c)d', '%b()'), '(a(b)c)', '%b')\n"
    "eq(mine.find('THE (quick) fox', '%f[%a]%a+', 5), 6, 'frontier')\n"
    "eq(mine.match('key = value', '(%w+)%s*=%s*(%w+)'), 'key', 'two captures')\n"
    "eq(select(2, mine.match('key = value', '(%w+)%s*=%s*(%w+)')), 'value', 'second capture')\n"
    "eq(mine.match('abcabc', '(abc)%1'), 'abc', 'back-reference')\n"
    "eq(mine.match('\\200a', '%a'), 'a', 'bytes >= 0x80 are in no class')\n"
    "local n = 0; for w in mine.gmatch('a^b^b', '^b') do n = n + 1 end; eq(n, 2, 'gmatch ^ is "
    "literal')\n"
    "eq(mine.gsub('aaa', '^a', 'X'), 'Xaa', 'anchored gsub')\n"
    "eq(mine.find(123, 2), 2, 'numbers are strings')\n"
    "eq(('x'):rep(3), 'xxx', 'sanity')\n"
    "for _, bad in ipairs{ '[a', '%', '%b', '%ba', '%f', '(a', 'a)(', '%1', "
    "string.rep('(', 33) .. string.rep(')', 33) } do\n"
    "  eq(pcall(mine.find, 'abc(', bad), false, 'malformed: ' .. bad)\n"
    "end\n"
    "eq(pcall(mine.find, 'a', string.rep('a*', 250)), false, 'too complex')\n"
    "eq(pcall(mine.gsub, 'abc', 'b', true), false, 'bad replacement type')\n"
    "eq(pcall(mine.gsub, 'abc', 'b', { b = {} }), false, 'bad replacement value')\n"
    "return 'ok'\n";

static lua_State *new_state(void)
{
    lua_State *L = luaL_newstate();

    luaL_openlibs(L);
    lua_newtable(L);
    moor_pattern_register(L, -1);
    return L;
}

static void test_against_luajit(void **state)
{
    lua_State *L = new_state();
    const char *env = getenv("MOOR_PATTERN_CASES");
    long cases = env && *env ? strtol(env, NULL, 10) : 20000;
    uint64_t t0 = moor_clock_mono_ms();

    (void)state;
    if (luaL_loadstring(L, compare_script))
        fail_msg("script: %s", lua_tostring(L, -1));
    lua_insert(L, -2); /* mine as the first argument */
    lua_pushnumber(L, (double)(seed % 2147483647u));
    lua_pushnumber(L, (double)cases);
    if (lua_pcall(L, 3, 2, 0))
        fail_msg("seed %llu: %s", (unsigned long long)seed, lua_tostring(L, -1));
    printf("pattern.c vs LuaJIT: %ld patterns, %.0f calls agreed on a result, %.0f on an error "
           "(%llu ms)\n",
           cases, lua_tonumber(L, -2), lua_tonumber(L, -1),
           (unsigned long long)(moor_clock_mono_ms() - t0));
    /* both kinds must have been exercised */
    assert_true(lua_tonumber(L, -2) > cases);
    assert_true(lua_tonumber(L, -1) > cases / 20);
    lua_close(L);
}

static void test_fixed_cases(void **state)
{
    lua_State *L = new_state();

    (void)state;
    if (luaL_loadstring(L, fixed_script))
        fail_msg("script: %s", lua_tostring(L, -1));
    lua_insert(L, -2);
    if (lua_pcall(L, 1, 1, 0))
        fail_msg("%s", lua_tostring(L, -1));
    assert_string_equal(lua_tostring(L, -1), "ok");
    lua_close(L);
}

/* ("a"):rep(400):find(".-.-.-b") needs ~10^9 steps; under a budget of
 * 10^6 instructions the matcher stops after about that many. */
static void test_budget_stops_a_match(void **state)
{
    static const char *const calls[] = {
        "return mine.find(string.rep('a', 400), '.-.-.-b')",
        "return mine.match(string.rep('a', 400), '(.-)(.-)(.-)b')",
        "return mine.gsub(string.rep('a', 400), '.-.-.-b', 'x')",
        "for m in mine.gmatch(string.rep('a', 400), '.-.-.-b') do end",
        "return mine.find(string.rep('a', 30), string.rep('a*', 20) .. 'b')",
    };
    lua_State *L = new_state();

    (void)state;
    lua_setglobal(L, "mine");
    for (size_t i = 0; i < sizeof(calls) / sizeof(calls[0]); i++) {
        moor_budget_t b, *prev;
        uint64_t t0 = moor_clock_mono_ms();
        int rc;

        moor_budget_init(&b, 1000000, 600000, NULL);
        assert_int_equal(luaL_loadstring(L, calls[i]), 0);
        prev = moor_budget_enter(L, &b, 0);
        rc = lua_pcall(L, 0, 1, 0);
        moor_budget_leave(L, prev);
        printf("%s: stopped after %llu steps charged, %llu ms\n", calls[i],
               (unsigned long long)b.used, (unsigned long long)(moor_clock_mono_ms() - t0));
        if (rc == 0 || !strstr(lua_tostring(L, -1), "over its instruction budget"))
            fail_msg("%s: expected a stop, got rc %d: %s", calls[i], rc,
                     lua_tostring(L, -1) ? lua_tostring(L, -1) : "(a result)");
        assert_int_equal(b.over, MOOR_OVER_INSTR);
        assert_true(b.used < 3000000);
        lua_pop(L, 1);
    }
    lua_close(L);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixed_cases),
        cmocka_unit_test(test_against_luajit),
        cmocka_unit_test(test_budget_stops_a_match),
    };

    seed = testutil_seed("test_pattern");
    return cmocka_run_group_tests(tests, NULL, NULL);
}
