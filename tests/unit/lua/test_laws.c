/*
 * test_laws.c -- moor_lua_check_laws (core/lua/laws.c): every resolver of
 * a loaded config checked inside the host, lawful ones reported ok, each
 * broken law reported with its input, errors and budget stops as
 * failures, and the host left serving (its stack, budget and resolvers as
 * before).  Lua-level details of the checks are in tests/spec/laws_spec.lua.
 */
#include <lua.h>

#include "harness.h"
#include "lua/lua_internal.h"

static int stack_top(moor_lua_t *h)
{
    moor_lua_inside_t in;

    moor_lua_inside(h, &in);
    return lua_gettop(in.L);
}

static const char good_cfg[] =
    "moor.cfg{ node = 'n1', plugins = { 'resolvers.lww', 'resolvers.set_union',\n"
    "  'resolvers.counter' } }\n"
    "moor.resolver('max', function(s)\n"
    "  local b\n"
    "  for _, x in ipairs(s) do\n"
    "    if not x.tombstone and (b == nil or x.value > b) then b = x.value end\n"
    "  end\n"
    "  return b\n"
    "end, { values = 'number' })\n";

static const char bad_cfg[] =
    "moor.cfg{ node = 'n1' }\n"
    "moor.resolver('first', function(s) return s[1].value end)\n"
    "moor.resolver('spin', function() while true do end end, { runs = 3 })\n"
    "moor.resolver('smallest', function(s)\n"
    "  local b\n"
    "  for _, x in ipairs(s) do\n"
    "    if not x.tombstone and (b == nil or x.value < b) then b = x.value end\n"
    "  end\n"
    "  return b\n"
    "end, { values = 'integer' })\n"
    "calls = 0\n"
    "moor.resolver('counting', function(s) calls = calls + 1; return calls end,\n"
    "              { values = 'integer' })\n";

/* The report as a C string (owned by r). */
static const char *text(moor_buf_t *r)
{
    moor_buf_append(r, "", 1);
    r->len--;
    return r->data;
}

static void test_lawful(void **state)
{
    env_t e;
    moor_buf_t r = MOOR_BUF_INIT;
    const char *t;

    (void)state;
    assert_int_equal(env_open(&e, good_cfg), 0);
    assert_int_equal(moor_lua_check_laws(e.h, &r), 0);
    t = text(&r);
    for (const char *const *n = (const char *const[]){"counter", "lww", "max", "set_union", NULL};
         *n; n++) {
        char want[128];
        snprintf(want, sizeof(want),
                 "resolver '%s': ok (commutative, associative, idempotent; 200 runs)\n", *n);
        if (!strstr(t, want))
            fail_msg("missing \"%s\" in:\n%s", want, t);
    }
    moor_buf_free(&r);
    env_close(&e);
}

static void test_lawless(void **state)
{
    env_t e;
    moor_buf_t r = MOOR_BUF_INIT, r2 = MOOR_BUF_INIT, out = MOOR_BUF_INIT;
    const char *t, *d;
    static const char sib[] = "\x92\x81\xa5value\x05\x81\xa5value\x02";
    int top;

    (void)state;
    assert_int_equal(env_open(&e, bad_cfg), 0);
    top = stack_top(e.h);
    assert_int_equal(moor_lua_check_laws(e.h, &r), MOOR_EHANDLER);
    d = moor_diag_msg(MOOR_EHANDLER);
    if (!strstr(d, "3 of 4 resolvers break a law: 'counting', 'first', 'spin'"))
        fail_msg("diagnostic: %s", d);
    t = text(&r);
    if (!strstr(t, "resolver 'first': not commutative: siblings {{") ||
        !strstr(t, "resolver 'counting': not commutative: siblings {{value = ") ||
        !strstr(t, "resolver 'spin': raised an error: resolver 'spin' stopped: over its "
                   "instruction budget; siblings: {{") ||
        !strstr(t, "resolver 'smallest': ok (commutative, associative, idempotent; 200 runs)"))
        fail_msg("report:\n%s", t);
    /* the same config gives the same report (the counting resolver's
     * global aside, which only its own calls see) */
    assert_int_equal(moor_lua_check_laws(e.h, &r2), MOOR_EHANDLER);
    assert_non_null(strstr(text(&r2), "resolver 'first': not commutative"));
    /* the host serves on: stack balanced, resolvers callable */
    assert_int_equal(stack_top(e.h), top);
    assert_int_equal(moor_lua_resolve(e.h, "smallest", 8, sib, sizeof(sib) - 1, &out), 0);
    assert_int_equal(out.len, 1);
    assert_int_equal(out.data[0], 2);
    moor_buf_free(&out);
    moor_buf_free(&r);
    moor_buf_free(&r2);
    env_close(&e);
}

/* Memory: a resolver whose result passes the heap cap, and a values
 * generator that does, are failures; the heap is back under the cap and
 * the host serves on. */
static void test_memory(void **state)
{
    env_t e;
    moor_buf_t r = MOOR_BUF_INIT, out = MOOR_BUF_INIT;
    const char *t;
    size_t used, cap;
    uint64_t refused;
    static const char sib[] = "\x91\x81\xa5value\x05";

    (void)state;
    assert_int_equal(env_open(&e, "moor.cfg{ node = 'n1', handler = { memory_mb = 8 } }\n"
                                  "moor.resolver('huge', function() return string.rep('x', 2^26) "
                                  "end, { runs = 2 })\n"
                                  "moor.resolver('one', function() return 1 end, { runs = 2,\n"
                                  "  values = function() local t = {}\n"
                                  "    for i = 1, 1e8 do t[i] = i end end })\n"),
                     0);
    assert_int_equal(moor_lua_check_laws(e.h, &r), MOOR_EHANDLER);
    t = text(&r);
    if (!strstr(t, "resolver 'huge': raised an error: resolver 'huge' stopped: an allocation "
                   "would take the Lua heap past its limit of 8 MiB") ||
        !strstr(t, "resolver 'one': the check did not finish: stopped over the Lua memory limit "
                   "(handler.memory_mb)"))
        fail_msg("report:\n%s", t);
    moor_lua_heap(e.h, &used, &cap, &refused);
    assert_true(used <= cap);
    assert_true(refused >= 2);
    assert_int_equal(moor_lua_resolve(e.h, "one", 3, sib, sizeof(sib) - 1, &out), 0);
    assert_int_equal(out.len, 1);
    moor_buf_free(&out);
    moor_buf_free(&r);
    env_close(&e);
}

static void test_no_resolvers_and_no_config(void **state)
{
    env_t e;
    moor_buf_t r = MOOR_BUF_INIT;
    moor_lua_t *h;
    moor_lua_opts_t o;
    uv_loop_t loop;

    (void)state;
    assert_int_equal(env_open(&e, "moor.cfg{ node = 'n1' }\n"), 0);
    assert_int_equal(moor_lua_check_laws(e.h, &r), 0);
    assert_int_equal(r.len, 0);
    env_close(&e);

    uv_loop_init(&loop);
    memset(&o, 0, sizeof(o));
    o.loop = &loop;
    o.root = root;
    assert_int_equal(moor_lua_new(&o, &h), 0);
    assert_int_equal(moor_lua_check_laws(h, &r), MOOR_EINVAL);
    assert_non_null(strstr(moor_diag_msg(MOOR_EINVAL), "no config loaded"));
    moor_lua_free(h);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    moor_buf_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lawful),
        cmocka_unit_test(test_lawless),
        cmocka_unit_test(test_memory),
        cmocka_unit_test(test_no_resolvers_and_no_config),
    };

    find_root();
    seed_state = testutil_seed("test_laws");
    return cmocka_run_group_tests(tests, NULL, NULL);
}
