/*
 * test_budget.c -- what a handler or resolver may spend (core/lua/budget.c
 * through the host): the heap cap (handler.memory_mb) and the budget
 * inside C functions that loop (pattern matching, sort, move, the codec).
 *
 * TEST: regression tests for the "Hardening" issue's item 7.  Before,
 * `return #string.rep('x', 2^30)` answered its length after seconds and
 * gigabytes, a pattern like ".-.-.-b" on 400 a's answered nil after
 * seconds, table.move over 2^27 slots and a sort of a million numbers ran
 * to the end: each assertion below on an error code failed then.  Times
 * are printed, never asserted.  The fake node of harness.h answers kv.
 */
#include "harness.h"

static const char budget_conf[] =
    "moor.cfg{ node = 'n1', handler = { memory_mb = 32, timeout_ms = 60000 } }\n"
    "moor.handle('rep', function(n) return #string.rep('x', n) end)\n"
    "moor.handle('rep_pcall', function(n)\n"
    "  local ok, e = pcall(string.rep, 'x', n)\n"
    "  local t = {}\n"
    "  for i = 1, 1000 do t[i] = tostring(i) end\n"
    "  return 'swallowed: ' .. tostring(e)\n"
    "end)\n"
    "moor.handle('hoard', function()\n"
    "  local t, i = {}, 0\n"
    "  while true do i = i + 1; t[i] = string.rep('y', 1000) .. i end\n"
    "end, { instructions = 1000000000000, timeout_ms = 60000 })\n"
    "moor.handle('concat', function(n)\n"
    "  local t = {}\n"
    "  for i = 1, 64 do t[i] = string.rep('z', n) end\n"
    "  return #table.concat(t)\n"
    "end)\n"
    "moor.handle('first', function(x) return x end)\n"
    "moor.resolver('greedy', function(s) return #string.rep('x', 2^30) end)\n"
    "moor.resolver('spin', function(s) return string.rep('a', 400):find('.-.-.-b') end)\n"
    "moor.handle('pathological', function(n) return string.rep('a', n):find('.-.-.-b') end)\n"
    "moor.handle('pathological_method', function(n)\n"
    "  local s = ('a'):rep(n)\n"
    "  return s:match('(.-)(.-)(.-)b')\n"
    "end)\n"
    "moor.handle('pathological_gsub', function(n)\n"
    "  return (string.gsub(string.rep('a', n), '.-.-.-b', ''))\n"
    "end)\n"
    "moor.handle('pathological_pcall', function(n)\n"
    "  local ok, e = pcall(string.find, string.rep('a', n), '.-.-.-b')\n"
    "  return 'swallowed: ' .. tostring(ok) .. ' ' .. tostring(e)\n"
    "end)\n"
    "moor.handle('pathological_time', function(n)\n"
    "  return string.rep('a', n):find('.-.-.-b')\n"
    "end, { instructions = 1000000000000, timeout_ms = 100 })\n"
    "moor.handle('fine_pattern', function(s) return (s:gsub('%s+', ' ')) end)\n"
    "moor.handle('move', function() table.move({}, 1, 2^27, 1); return 'moved' end)\n"
    "moor.handle('sort', function(s) local t = moor.decode(s); table.sort(t); return t[1] end)\n"
    "moor.handle('decode', function(s) return #moor.decode(s) end, { instructions = 100000 })\n";

static void open_budget(env_t *e)
{
    int rc = env_open(e, budget_conf);

    if (rc)
        fail_msg("load_config: %s", moor_diag_msg(rc));
    e->f->mode = ANSWER_SYNC;
}

/* Encodes one uint32 argument. */
static size_t arg_u32(char *buf, uint32_t v)
{
    buf[0] = (char)0xce;
    buf[1] = (char)(v >> 24), buf[2] = (char)(v >> 16), buf[3] = (char)(v >> 8), buf[4] = (char)v;
    return 5;
}

static void timed_call(env_t *e, const char *name, uint32_t n, reply_t *r)
{
    char arg[8];
    size_t alen = arg_u32(arg, n);
    uint64_t t0 = moor_clock_mono_ms();

    call(e, name, arg, alen, 1, r);
    printf("%s(%u): %s %s (%llu ms)\n", name, n, r->code[0] ? r->code : "ok", r->msg,
           (unsigned long long)(moor_clock_mono_ms() - t0));
}

static void heap_state(env_t *e, size_t *used, size_t *cap, uint64_t *refused)
{
    moor_lua_heap(e->h, used, cap, refused);
    printf("  Lua heap: %zu KiB of %zu MiB, %llu allocations refused\n", *used >> 10, *cap >> 20,
           (unsigned long long)*refused);
}

/* 2^30 bytes at once, memory taken a little at a time, a pcall around the
 * refusal, a table.concat past the cap: each a clean HANDLER_ERROR naming
 * the limit, the memory back afterwards, and the next call served. */
static void test_memory_cap(void **state)
{
    static const struct {
        const char *name;
        uint32_t n;
    } cases[] = {{"rep", 1u << 30}, {"rep_pcall", 1u << 30}, {"hoard", 0}, {"concat", 1u << 20}};
    env_t e;
    reply_t r;
    size_t used, cap;
    uint64_t refused, before;

    (void)state;
    open_budget(&e);
    heap_state(&e, &used, &cap, &before);
    assert_int_equal(cap, 32u << 20);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        timed_call(&e, cases[i].name, cases[i].n, &r);
        expect_err(&r, "HANDLER_ERROR", "past its limit of 32 MiB (handler.memory_mb)");
        heap_state(&e, &used, &cap, &refused);
        assert_true(refused > before);
        before = refused;
        /* collected (LuaJIT keeps a scratch buffer that each collection
         * halves, so not all of it at once) */
        assert_true(used < cap / 2);
        call(&e, "first", "\x2a", 1, 1, &r);
        OK_BYTES(&r, "\x2a");
    }
    /* under the cap, the same functions work */
    timed_call(&e, "rep", 1u << 20, &r);
    OK_BYTES(&r, "\xce\x00\x10\x00\x00");
    timed_call(&e, "concat", 1u << 10, &r);
    OK_BYTES(&r, "\xce\x00\x01\x00\x00");
    assert_int_equal(moor_lua_inflight(e.h), 0);
    env_close(&e);
}

/* Resolvers run under the same cap and budget. */
static void test_resolver_limits(void **state)
{
    static const char sib[] = "\x91\x81\xa5value\x01";
    moor_buf_t out = MOOR_BUF_INIT;
    env_t e;
    int rc;

    (void)state;
    open_budget(&e);
    rc = moor_lua_resolve(e.h, "greedy", 6, sib, sizeof(sib) - 1, &out);
    printf("greedy resolver: %s\n", moor_diag_msg(rc));
    assert_int_equal(rc, MOOR_EHANDLER);
    assert_non_null(strstr(moor_diag_msg(rc), "handler.memory_mb"));
    rc = moor_lua_resolve(e.h, "spin", 4, sib, sizeof(sib) - 1, &out);
    printf("spin resolver: %s\n", moor_diag_msg(rc));
    assert_int_equal(rc, MOOR_EHTIMEOUT);
    assert_int_equal(out.len, 0);
    moor_buf_free(&out);
    env_close(&e);
}

/* The matcher charges the budget: a catastrophic pattern stops with
 * HANDLER_TIMEOUT, by instructions or by time, however it is called; an
 * ordinary one on a long subject runs. */
static void test_pattern_budget(void **state)
{
    static const char *const by_instr[] = {"pathological", "pathological_method",
                                           "pathological_gsub", "pathological_pcall"};
    env_t e;
    reply_t r;
    moor_buf_t args = MOOR_BUF_INIT;
    msgpack_packer pk;
    char *text = malloc(100000);

    (void)state;
    open_budget(&e);
    for (size_t i = 0; i < sizeof(by_instr) / sizeof(by_instr[0]); i++) {
        timed_call(&e, by_instr[i], 400, &r);
        expect_err(&r, "HANDLER_TIMEOUT", "over its budget of 10000000 instructions");
    }
    timed_call(&e, "pathological_time", 400, &r);
    expect_err(&r, "HANDLER_TIMEOUT", "over its time budget of 100 ms");
    for (int i = 0; i < 100000; i++)
        text[i] = i % 7 == 0 ? ' ' : 'w';
    moor_mp_packer_init(&pk, &args);
    msgpack_pack_str_with_body(&pk, text, 100000);
    call(&e, "fine_pattern", args.data, args.len, 1, &r);
    assert_string_equal(r.code, "");
    moor_buf_free(&args);
    free(text);
    env_close(&e);
}

/* Packs a bin holding a MessagePack array of n small integers. */
static void pack_int_array(moor_buf_t *args, uint32_t n)
{
    moor_buf_t arr = MOOR_BUF_INIT;
    msgpack_packer pk;

    moor_mp_packer_init(&pk, &arr);
    msgpack_pack_array(&pk, n);
    for (uint32_t i = 0; i < n; i++)
        msgpack_pack_uint32(&pk, (i * 7919u) % 100u);
    moor_mp_packer_init(&pk, args);
    msgpack_pack_bin(&pk, arr.len);
    msgpack_pack_bin_body(&pk, arr.data, arr.len);
    moor_buf_free(&arr);
}

/* table.move, table.sort and moor.decode loop in C: they charge the
 * budget too. */
static void test_c_loops_budget(void **state)
{
    env_t e;
    reply_t r;
    moor_buf_t args = MOOR_BUF_INIT;
    uint64_t t0;

    (void)state;
    open_budget(&e);
    t0 = moor_clock_mono_ms();
    call(&e, "move", "", 0, 0, &r);
    printf("move over 2^27 slots: %s %s (%llu ms)\n", r.code, r.msg,
           (unsigned long long)(moor_clock_mono_ms() - t0));
    expect_err(&r, "HANDLER_TIMEOUT", "instructions");
    pack_int_array(&args, 1000000);
    t0 = moor_clock_mono_ms();
    call(&e, "sort", args.data, args.len, 1, &r);
    printf("sort of 10^6 numbers: %s %s (%llu ms)\n", r.code, r.msg,
           (unsigned long long)(moor_clock_mono_ms() - t0));
    expect_err(&r, "HANDLER_TIMEOUT", "instructions");
    t0 = moor_clock_mono_ms();
    call(&e, "decode", args.data, args.len, 1, &r);
    printf("decode of 10^6 values under 10^5 instructions: %s %s (%llu ms)\n", r.code, r.msg,
           (unsigned long long)(moor_clock_mono_ms() - t0));
    expect_err(&r, "HANDLER_TIMEOUT", "instructions");
    moor_buf_free(&args);
    /* a small sort is fine */
    pack_int_array(&args, 1000);
    call(&e, "sort", args.data, args.len, 1, &r);
    OK_BYTES(&r, "\x00");
    moor_buf_free(&args);
    env_close(&e);
}

/* A config that keeps more than the cap cannot start: every handler would
 * fail its first allocation. */
static void test_config_over_cap(void **state)
{
    env_t e;
    int rc = env_open(&e, "moor.cfg{ node = 'n1', handler = { memory_mb = 8 } }\n"
                          "big = string.rep('x', 12 * 1024 * 1024)\n");

    (void)state;
    if (rc != MOOR_EINVAL || !strstr(moor_diag_msg(rc), "more than handler.memory_mb = 8"))
        fail_msg("expected the config to be refused, got %d: %s", rc, rc ? moor_diag_msg(rc) : "");
    env_close(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_memory_cap),      cmocka_unit_test(test_resolver_limits),
        cmocka_unit_test(test_pattern_budget),  cmocka_unit_test(test_c_loops_budget),
        cmocka_unit_test(test_config_over_cap),
    };

    find_root();
    seed_state = testutil_seed("test_budget");
    return cmocka_run_group_tests(tests, NULL, NULL);
}
