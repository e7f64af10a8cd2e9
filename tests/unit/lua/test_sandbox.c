/*
 * test_sandbox.c -- isolation between handlers (core/lua/sandbox.c through
 * the host): read-only moor and library tables, one environment per
 * handler and per resolver.
 *
 * TEST: regression tests for the "Hardening" issue's item 8.  Before, all
 * handlers shared one global table: `moor.put = function() return {ctx =
 * ""} end` in one call made the incr plugin answer success while storing
 * nothing, and `_G.tostring = ...` changed every other handler's output.
 * The assertions on error codes and on what the fake store holds failed
 * then.  The fake node of harness.h answers kv at once.
 */
#include "harness.h"

static const char isolation_conf[] =
    "moor.cfg{ node = 'n1', plugins = { 'handlers.incr', 'resolvers.set_union' } }\n"
    "local G = _G\n"
    "function config_helper() leaked = true end\n"
    "moor.handle('evil_put', function() moor.put = function() return { ctx = '' } end end)\n"
    "moor.handle('evil_rawset', function() rawset(moor, 'put', print) end)\n"
    "moor.handle('evil_tostring', function() _G.tostring = function() return 'pwned' end; return "
    "'done' end)\n"
    "moor.handle('show', function(x) return tostring(x) end)\n"
    "moor.handle('count', function() hits = (hits or 0) + 1; return hits end)\n"
    "moor.handle('hits', function() return hits end)\n"
    "moor.handle('string_rep', function() string.rep = nil end)\n"
    "moor.handle('string_rawset', function() rawset(string, 'rep', nil) end)\n"
    "moor.handle('setmt', function() setmetatable(string, {}) end)\n"
    "moor.handle('insert', function() table.insert(moor, 1) end)\n"
    "moor.handle('sort_moor', function() table.sort(math) end)\n"
    "moor.handle('array', function() moor.array(string) end)\n"
    "moor.handle('marker', function() getmetatable(moor.array()).__name = 'moor.map' end)\n"
    "moor.handle('marker_name', function()\n"
    "  return rawget(getmetatable(moor.decode(moor.encode({1}))), '__name')\n"
    "end)\n"
    "moor.handle('module', function() require('moor.values').pick = nil end)\n"
    "moor.handle('helper', function() config_helper(); return leaked end)\n"
    "moor.handle('leaked', function() return leaked end)\n"
    "moor.handle('via_config_G', function() G.x = 1 end)\n"
    "moor.handle('load_global', function() load('loaded = 5')(); return loaded end)\n"
    "moor.handle('loaded', function() return loaded end)\n"
    "moor.handle('pairs', function()\n"
    "  local n = 0\n"
    "  for k, v in pairs(string) do assert(type(v) == 'function'); n = n + 1 end\n"
    "  local own = {}\n"
    "  for k in pairs(_G) do own[#own + 1] = k end\n"
    "  table.sort(own)\n"
    "  return { n = n, own = table.concat(own, ','), next = next(math) ~= nil,\n"
    "           raw = rawget(string, 'rep') == string.rep }\n"
    "end)\n"
    "moor.handle('methods', function() return ('x'):rep(3) .. ('%d'):format(7) .. ('a b'):gsub(' "
    "', '') end)\n"
    "moor.handle('string_mt', function() return getmetatable('') end)\n"
    "moor.handle('arg', function() return moor.arg.extra end)\n"
    "moor.handle('arg_write', function() moor.arg.node = 'x' end)\n"
    "moor.handle('cfg_again', function() moor.cfg{ node = 'n2' } end)\n"
    "moor.resolver('res_global', function(s) resolver_global = 'r'; return s[1].value end)\n"
    "moor.handle('see_resolver_global', function() return resolver_global end)\n";

static void open_isolation(env_t *e)
{
    int rc = env_open(e, isolation_conf);

    if (rc)
        fail_msg("load_config: %s", moor_diag_msg(rc));
    e->f->mode = ANSWER_SYNC;
}

/* The case: a call that replaces moor.put fails, and incr still
 * stores what it says. */
static void test_moor_is_read_only(void **state)
{
    env_t e;
    reply_t r;
    entry_t *stored;

    (void)state;
    open_isolation(&e);
    call(&e, "evil_put", "", 0, 0, &r);
    expect_err(&r, "HANDLER_ERROR", "cannot set moor.put: moor is read-only");
    call(&e, "evil_rawset", "", 0, 0, &r);
    expect_err(&r, "HANDLER_ERROR", "rawset: the table is read-only");
    call(&e, "incr",
         "\xa1"
         "c\x05",
         3, 2, &r);
    OK_BYTES(&r, "\x05");
    stored = lookup(e.f, "c", 1, 0);
    assert_non_null(stored);
    assert_int_equal(stored->val.len, 1);
    assert_int_equal(stored->val.data[0], 5);
    env_close(&e);
}

/* _G.tostring in one handler does not change another's output; a global
 * one handler writes is its own (and kept between its calls), invisible
 * to every other handler and resolver. */
static void test_own_globals(void **state)
{
    static const char sib[] = "\x91\x81\xa5value\x01";
    moor_buf_t out = MOOR_BUF_INIT;
    env_t e;
    reply_t r;

    (void)state;
    open_isolation(&e);
    call(&e, "evil_tostring", "", 0, 0, &r);
    OK_BYTES(&r, "\xa4"
                 "done");
    call(&e, "show", "\x2a", 1, 1, &r);
    OK_BYTES(&r, "\xa2"
                 "42");
    call(&e, "count", "", 0, 0, &r);
    OK_BYTES(&r, "\x01");
    call(&e, "count", "", 0, 0, &r); /* its own global, kept between its calls */
    OK_BYTES(&r, "\x02");
    call(&e, "hits", "", 0, 0, &r);
    OK_BYTES(&r, "\xc0");
    /* a config function called from a handler writes the handler's globals */
    call(&e, "helper", "", 0, 0, &r);
    OK_BYTES(&r, "\xc3");
    call(&e, "leaked", "", 0, 0, &r);
    OK_BYTES(&r, "\xc0");
    call(&e, "via_config_G", "", 0, 0, &r);
    expect_err(&r, "HANDLER_ERROR", "cannot set global 'x': the config's globals are read-only");
    call(&e, "load_global", "", 0, 0, &r);
    OK_BYTES(&r, "\x05");
    call(&e, "loaded", "", 0, 0, &r);
    OK_BYTES(&r, "\xc0");
    assert_int_equal(moor_lua_resolve(e.h, "res_global", 10, sib, sizeof(sib) - 1, &out), 0);
    call(&e, "see_resolver_global", "", 0, 0, &r);
    OK_BYTES(&r, "\xc0");
    moor_buf_free(&out);
    env_close(&e);
}

/* Every way to write a shared table fails with a message; reads still
 * work (pairs, next, rawget, string methods). */
static void test_library_tables(void **state)
{
    static const struct {
        const char *name, *needle;
    } refused[] = {
        {"string_rep", "cannot set string.rep: string is read-only"},
        {"string_rawset", "rawset: the table is read-only"},
        {"setmt", "cannot change a protected metatable"},
        {"insert", "table.insert: the table is read-only"},
        {"sort_moor", "table.sort: the table is read-only"},
        {"array", "cannot change a protected metatable"},
        {"marker", "cannot set moor.array.__name"},
        {"module", "cannot set moor.values.pick"},
        {"arg_write", "cannot set moor.arg.node"},
        {"cfg_again", "moor.cfg can only be called while the config file loads"},
    };
    env_t e;
    reply_t r;

    (void)state;
    open_isolation(&e);
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        call(&e, refused[i].name, "", 0, 0, &r);
        expect_err(&r, "HANDLER_ERROR", refused[i].needle);
    }
    call(&e, "methods", "", 0, 0, &r);
    OK_BYTES(&r, "\xa6xxx7ab");
    call(&e, "string_mt", "", 0, 0, &r);
    OK_BYTES(&r, "\xc2");
    call(&e, "marker_name", "", 0, 0, &r);
    OK_BYTES(&r, "\xaamoor.array");
    call(&e, "pairs", "", 0, 0, &r);
    if (r.code[0] || !memmem(r.res.data, r.res.len, "own\xa2_G", 6) ||
        !memmem(r.res.data, r.res.len, "next\xc3", 5) ||
        !memmem(r.res.data, r.res.len, "raw\xc3", 4))
        fail_msg("pairs over read-only tables: %s %s", r.code, r.msg);
    /* C code still writes the real tables after the config loaded */
    assert_int_equal(moor_lua_set_arg(e.h, "extra", "yes"), 0);
    call(&e, "arg", "", 0, 0, &r);
    OK_BYTES(&r, "\xa3yes");
    env_close(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_moor_is_read_only),
        cmocka_unit_test(test_own_globals),
        cmocka_unit_test(test_library_tables),
    };

    find_root();
    seed_state = testutil_seed("test_sandbox");
    return cmocka_run_group_tests(tests, NULL, NULL);
}
