/*
 * test_host.c -- the Lua host (core/lua/host.c, sandbox.c, config.c,
 * codec.c) driven with the fake node of harness.h and a real libuv loop.
 */
#include <lauxlib.h>
#include <lualib.h>

#include <fcntl.h>
#include <unistd.h>

#include "harness.h"
#include "cluster/coord.h"
#include "lua/codec.h"
#include "util/log.h"

/* ---- config --------------------------------------------------------------------- */

static void test_config_good(void **state)
{
    env_t e;
    const moor_space_cfg_t *s;
    int rc = env_open(
        &e, "moor.cfg{ node = 'n1', listen = '127.0.0.2:7711', data_dir = 'd/n1',\n"
            "  engine = { memtable_mb = 8, cache_mb = 16, sync = 'always', sync_ms = 5,\n"
            "             compression = 1, bloom_bits = 12, wal_recovery = 'stop' },\n"
            "  limits = { max_frame_mb = 4, key_max = 1000, value_max_mb = 2, max_conns = 10,\n"
            "             idle_timeout_ms = 5000, max_inflight = 7 },\n"
            "  auth_token = 'sekrit', log = { level = 'warn', file = 'x.log' },\n"
            "  handler = { instructions = 50000, timeout_ms = 250, memory_mb = 64 },\n"
            "  sandbox = { io = false, os = true },\n"
            "  hints = { window_s = 60, max_mb = 8, rate_kb_s = 100 },\n"
            "  plugins = { 'resolvers.lww', 'handlers.incr' } }\n"
            "moor.space('carts', { n = 1, r = 1, w = 1, resolver = 'lww', sloppy = false })\n"
            "moor.space('default', { resolver = 'mine' })\n"
            "moor.resolver('mine', function(s) return s[1].value end)\n"
            "moor.gossip{ period_ms = 400, probe_timeout_ms = 150, gossip_fanout = 2 }\n"
            "moor.handle('hello', function(n) return 'hi ' .. n end, { timeout_ms = 100 })\n");

    (void)state;
    if (rc)
        fail_msg("load_config: %s", moor_diag_msg(rc));
    assert_string_equal(e.cfg.node, "n1");
    assert_string_equal(e.cfg.listen_host, "127.0.0.2");
    assert_int_equal(e.cfg.listen_port, 7711);
    assert_string_equal(e.cfg.data_dir, "d/n1");
    assert_int_equal(e.cfg.engine.memtable_bytes, 8u << 20);
    assert_int_equal(e.cfg.engine.cache_bytes, 16u << 20);
    assert_int_equal(e.cfg.engine.sync_mode, MOOR_SYNC_ALWAYS);
    assert_int_equal(e.cfg.engine.sync_interval_ms, 5);
    assert_int_equal(e.cfg.engine.compression_level, 1);
    assert_int_equal(e.cfg.engine.bloom_bits, 12);
    assert_int_equal(e.cfg.engine.wal_recovery, MOOR_WAL_RECOVERY_STOP);
    assert_int_equal(e.cfg.max_frame, 4u << 20);
    assert_int_equal(e.cfg.key_max, 1000);
    assert_int_equal(e.cfg.value_max, 2u << 20);
    assert_int_equal(e.cfg.max_conns, 10);
    assert_int_equal(e.cfg.idle_timeout_ms, 5000);
    assert_int_equal(e.cfg.max_inflight, 7);
    assert_string_equal(e.cfg.auth_token, "sekrit");
    assert_int_equal(e.cfg.log_level, 2);
    assert_string_equal(e.cfg.log_file, "x.log");
    assert_int_equal(e.cfg.handler_instructions, 50000);
    assert_int_equal(e.cfg.handler_timeout_ms, 250);
    assert_int_equal(e.cfg.handler_memory, 64u << 20);
    assert_int_equal(e.cfg.sandbox_allow_io, 0);
    assert_int_equal(e.cfg.sandbox_allow_os, 1);
    assert_int_equal(e.cfg.nspaces, 2);
    s = moor_config_space(&e.cfg, "carts", 5);
    assert_non_null(s);
    assert_string_equal(s->resolver, "lww");
    assert_int_equal(s->sloppy, 0);
    s = moor_config_space(&e.cfg, "default", 7);
    assert_non_null(s);
    assert_string_equal(s->resolver, "mine");
    assert_int_equal(s->sloppy, 1);
    assert_int_equal(e.cfg.hints_window_s, 60);
    assert_int_equal(e.cfg.hints_max_mb, 8);
    assert_int_equal(e.cfg.hints_rate_kb_s, 100);
    assert_int_equal(e.cfg.gossip.period_ms, 400);
    assert_int_equal(e.cfg.gossip.probe_timeout_ms, 150);
    assert_int_equal(e.cfg.gossip.gossip_fanout, 2);
    assert_int_equal(e.cfg.gossip.indirect_k, 3); /* default */
    assert_null(moor_config_space(&e.cfg, "nope", 4));

    reply_t r;
    call(&e, "hello", "\xa2yo", 3, 1, &r);
    OK_BYTES(&r, "\xa5hi yo");
    env_close(&e);
}

static void test_config_defaults(void **state)
{
    env_t e;
    int rc = env_open(&e, "moor.cfg{ node = 'solo' }\n");

    (void)state;
    if (rc)
        fail_msg("load_config: %s", moor_diag_msg(rc));
    assert_string_equal(e.cfg.listen_host, "127.0.0.1");
    assert_int_equal(e.cfg.listen_port, 7700);
    assert_string_equal(e.cfg.data_dir, "data");
    assert_int_equal(e.cfg.engine.wal_recovery, MOOR_WAL_RECOVERY_KEEP);
    assert_int_equal(e.cfg.nspaces, 1);
    assert_string_equal(e.cfg.spaces[0].name, "default");
    assert_string_equal(e.cfg.spaces[0].resolver, "");
    assert_true(e.cfg.handler_instructions > 0);
    assert_int_equal(e.cfg.handler_memory, 128u << 20);
    env_close(&e);
}

/* n defaults to 3 in a cluster and 1 alone; r and w to quorum; names
 * resolve against n. */
static void test_config_levels(void **state)
{
    env_t e;
    uint32_t n, r, w;
    int rc = env_open(&e, "moor.cfg{ node = 'n1', seeds = { '127.0.0.1:7701' } }\n"
                          "moor.space('a', { r = 'all', w = 'one' })\n"
                          "moor.space('b', { n = 5, r = 2 })\n");

    (void)state;
    if (rc)
        fail_msg("load_config: %s", moor_diag_msg(rc));
    assert_true(moor_config_clustered(&e.cfg));
    moor_config_levels(&e.cfg, moor_config_space(&e.cfg, "default", 7), &n, &r, &w);
    assert_true(n == 3 && r == 2 && w == 2);
    moor_config_levels(&e.cfg, moor_config_space(&e.cfg, "a", 1), &n, &r, &w);
    assert_true(n == 3 && r == 3 && w == 1);
    moor_config_levels(&e.cfg, moor_config_space(&e.cfg, "b", 1), &n, &r, &w);
    assert_true(n == 5 && r == 2 && w == 3);
    env_close(&e);

    rc = env_open(&e, "moor.cfg{ node = 'solo' }\nmoor.space('a', { w = 'all' })\n");
    if (rc)
        fail_msg("load_config: %s", moor_diag_msg(rc));
    assert_false(moor_config_clustered(&e.cfg));
    moor_config_levels(&e.cfg, moor_config_space(&e.cfg, "a", 1), &n, &r, &w);
    assert_true(n == 1 && r == 1 && w == 1);
    assert_int_equal(moor_level_parse("quorum", 6), MOOR_LEVEL_QUORUM);
    assert_int_equal(moor_level_parse("most", 4), MOOR_LEVEL_DEFAULT);
    env_close(&e);
}

/* One maximum of n: the Lua schema (moor.config N_MAX) refuses exactly
 * what the coordinator would (MOOR_COORD_N_MAX), with its own message. */
static void test_config_n_max(void **state)
{
    char text[160], want[64];
    env_t e;
    int rc;

    (void)state;
    snprintf(text, sizeof(text),
             "moor.cfg{ node = 'n1' }\nmoor.space('s', { n = %d, r = %d, w = %d })\n",
             MOOR_COORD_N_MAX, MOOR_COORD_N_MAX, MOOR_COORD_N_MAX);
    if ((rc = env_open(&e, text)))
        fail_msg("n = %d refused: %s", MOOR_COORD_N_MAX, moor_diag_msg(rc));
    env_close(&e);
    snprintf(text, sizeof(text), "moor.cfg{ node = 'n1' }\nmoor.space('s', { n = %d })\n",
             MOOR_COORD_N_MAX + 1);
    snprintf(want, sizeof(want), "moor.space('s'): n must be an integer in 1..%d",
             MOOR_COORD_N_MAX);
    rc = env_open(&e, text);
    if (rc != MOOR_EINVAL || !strstr(moor_diag_msg(rc), want))
        fail_msg("n = %d: rc %d, \"%s\", expected \"%s\"", MOOR_COORD_N_MAX + 1, rc,
                 rc ? moor_diag_msg(rc) : "", want);
    env_close(&e);
}

/* moor.arg: what moord's --node / --set pass; an empty table otherwise. */
static void test_config_args(void **state)
{
    static const char text[] = "local nodes = { a = '127.0.0.1:7801', b = '127.0.0.2:7802' }\n"
                               "local me = moor.arg.node or 'a'\n"
                               "moor.cfg{ node = me, listen = nodes[me] }\n";
    env_t e;
    int rc;

    (void)state;
    env_node_arg = "b";
    rc = env_open(&e, text);
    env_node_arg = NULL;
    if (rc)
        fail_msg("load_config: %s", moor_diag_msg(rc));
    assert_string_equal(e.cfg.node, "b");
    assert_string_equal(e.cfg.listen_host, "127.0.0.2");
    assert_int_equal(e.cfg.listen_port, 7802);
    env_close(&e);
    if ((rc = env_open(&e, text)))
        fail_msg("load_config: %s", moor_diag_msg(rc));
    assert_string_equal(e.cfg.node, "a");
    env_close(&e);
}

static void test_config_bad(void **state)
{
    static const struct {
        const char *text, *needle;
    } cases[] = {
        {"moor.cfg{ node = 'n1', lisen = '127.0.0.1:1' }", "moor.cfg: unknown key 'lisen'"},
        {"moor.cfg{ node = 'n1', engine = { sync = 'sometimes' } }",
         "moor.cfg: engine.sync must be one of always, interval, none, got 'sometimes'"},
        {"moor.cfg{ node = 'n1', engine = { wal_recovery = 'skip' } }",
         "moor.cfg: engine.wal_recovery must be one of keep, stop, got 'skip'"},
        {"moor.cfg{ node = 'n1', engine = { synk = 'always' } }",
         "moor.cfg: unknown key 'engine.synk'"},
        {"moor.cfg{ listen = '127.0.0.1:7700' }", "moor.cfg: node is required"},
        {"moor.space('x', {})", "moor.cfg: node is required"},
        {"moor.cfg{ node = 'n1', listen = '127.0.0.1' }", "moor.cfg: listen must be 'host:port'"},
        {"moor.cfg{ node = 'n1', seeds = { '127.0.0.1:1' } }\nmoor.space('s', { r = 4 })",
         "space 's': r=4 and w=2 must not exceed n=3"},
        {"moor.cfg{ node = 'n1' }\nmoor.space('s', { w = 'most' })",
         "w must be an integer in 1..16 or one of one, quorum, all"},
        {"moor.cfg{ node = 'n1', vclock = { max_entries = 40 } }",
         "vclock.max_entries must be an integer in 1..16"},
        {"moor.cfg{ node = 'n1', listen = '300.0.0.1:80' }", "got '300.0.0.1:80'"},
        {"moor.cfg{ node = 'n1', listen = '127.0.0.1:65536' }", "moor.cfg: listen must be"},
        {"moor.cfg{ node = 'n1' }\nmoor.space('carts', { resolver = 'set_union' })",
         "moor.space('carts'): resolver 'set_union' is not registered"},
        {"moor.cfg{ node = 'n1', plugins = { 'resolvers.nope' } }",
         "moor.cfg: plugin 'resolvers.nope' not found"},
        {"moor.cfg{ node = 'n1', plugins = { 'things.x' } }", "is not a resolver or a handler"},
        {"moor.cfg{ node = 'n1', limits = { max_conns = 'many' } }",
         "moor.cfg: limits.max_conns must be an integer"},
        {"moor.cfg{ node = 'n1', log = { level = 'loud' } }", "log.level must be one of"},
        {"moor.cfg{ node = 'n1' }\nmoor.cfg{ node = 'n2' }", "called twice"},
        {"moor.cfg{ node = 'bad id!' }", "moor.cfg: node must be a node id"},
        {"moor.cfg{ node = 'n1' }\nmoor.space('s', { n = 1, r = 2 })", "must not exceed n"},
        {"moor.cfg{ node = 'n1' }\nmoor.handle('h', 42)", "moor.handle('h'): expects a function"},
        {"moor.cfg{ node = 'n1' }\nmoor.handle('h', tostring, { instructions = 5 })",
         "moor.handle('h'): instructions must be an integer"},
        {"moor.cfg{ node = 'n1' }\nmoor.gossip{ gossip_fanout = 'x' }",
         "moor.gossip: gossip_fanout must be"},
        {"moor.cfg{ node = 'n1' }\nmoor.gossip{ period_ms = 100, probe_timeout_ms = 100 }",
         "gossip.probe_timeout_ms (100) must be below period_ms (100)"},
        {"moor.cfg{ node = 'n1', hints = { rate_kb_s = 0 } }", "hints.rate_kb_s must be"},
        {"moor.cfg{ node = 'n1' }\nmoor.gossip{ fanut = 3 }", "moor.gossip: unknown key 'fanut'"},
        {"moor.cfg{ node = 'n1' ", "conf.lua"}, /* syntax error, with the file name */
        {"moor.cfg{ node = 'n1' }\nlocal f = io.open('/etc/passwd')",
         "attempt to index global 'io'"},
        {"moor.cfg{ node = 'n1' }\nmoor.get('k')", "moor.get can only be called from a handler"},
        {"moor.cfg{ node = 'n1', handler = { memory_mb = 4 } }",
         "moor.cfg: handler.memory_mb must be an integer in 8..65536, got 4"},
        {"moor.cfg{ node = 'n1', handler = { memory_mb = 'lots' } }",
         "handler.memory_mb must be an integer in 8..65536, got 'lots'"},
        /* what a config raised when it was not a message */
        {"error({})", "config error: the config raised a table: {}"},
        {"error(nil)", "config error: the config raised nil instead of a message"},
        {"error()", "config error: the config raised nil instead of a message"},
        {"error(42)", "conf.lua:1: 42"}, /* Lua adds the position: a string */
        {"error(42, 0)", "config error: the config raised a number: 42"},
        {"error(true)", "config error: the config raised a boolean: true"},
        {"error({ code = 7, why = 'disk' })",
         "config error: the config raised a table: {code = 7, why = \"disk\"}"},
        {"error(setmetatable({}, { __tostring = function() return 'my error' end }))",
         "config error: the config raised a table: my error"},
        {"error(type)", "config error: the config raised a function"},
        /* the config budget: 1e8 instructions stop it well before 5 s */
        {"while true do end", "config exceeded its budget (100000000 instructions, 5000 ms)"},
        {"local function f() return f() end f()", "config exceeded its budget"},
    };

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        env_t e;
        int rc;

        rc = env_open(&e, cases[i].text);
        if (rc != MOOR_EINVAL || !strstr(moor_diag_msg(rc), cases[i].needle))
            fail_msg("config %zu (%s): rc %d, message \"%s\", expected \"%s\"", i, cases[i].text,
                     rc, rc ? moor_diag_msg(rc) : "", cases[i].needle);
        env_close(&e);
    }
}

/* ---- handlers -------------------------------------------------------------------- */

static const char handlers_conf[] =
    "moor.cfg{ node = 'n1', handler = { instructions = 200000, timeout_ms = 2000 },\n"
    "          plugins = { 'handlers.incr' } }\n"
    "moor.resolver('smallest', function(s)\n"
    "  local best = s[1].value\n"
    "  for _, x in ipairs(s) do if x.value < best then best = x.value end end\n"
    "  return best\n"
    "end)\n"
    /* several yields: put, get, put, get, del, get */
    "moor.handle('steps', function(k, n)\n"
    "  local ctx\n"
    "  for i = 1, n do\n"
    "    local w = assert(moor.put(k, i, { ctx = ctx }))\n"
    "    local res, err = moor.get(k)\n"
    "    assert(res, err)\n"
    "    assert(res.values[1] == i, 'read back ' .. tostring(res.values[1]))\n"
    "    ctx = res.ctx\n"
    "    assert(type(ctx) == 'string' and #ctx == 8)\n"
    "  end\n"
    "  assert(moor.del(k) == true)\n"
    "  local gone, err = moor.get(k)\n"
    "  assert(gone == nil and err == nil)\n"
    "  return n\n"
    "end)\n"
    "moor.handle('echo', function(...) return { ... } end)\n"
    "moor.handle('first', function(x) return x end)\n"
    "moor.handle('nothing', function() end)\n"
    "moor.handle('boom', function() error('boom: bad things') end)\n"
    "moor.handle('boom_table', function() error({}) end)\n"
    "moor.handle('badret', function() return { f = tostring } end)\n"
    "moor.handle('badput', function() return moor.put('k', function() end) end)\n"
    "moor.handle('kvfail', function() local r, e = moor.get('fail'); return { r == nil, e } end)\n"
    "moor.handle('resolve', function() return moor.get('resolve-me').values[1] end)\n"
    "moor.handle('spin', function() while true do end end)\n"
    "moor.handle('spin_pcall', function()\n"
    "  while true do pcall(function() while true do end end) end\n"
    "end)\n"
    "local function helper() local i = 0; while true do i = i + 1 end end\n"
    "moor.handle('spin_helper', function() helper() end)\n"
    "moor.handle('slow', function(k) local r = moor.get(k); return 1 end, { timeout_ms = 30 })\n"
    "moor.handle('slowput', function(k) moor.put(k, 1); moor.put(k, 2); return 1 end,\n"
    "            { timeout_ms = 30 })\n"
    "moor.handle('tight', function() local x = 0; for i = 1, 1e9 do x = x + i end end,\n"
    "            { instructions = 20000 })\n";

static void open_handlers(env_t *e, int mode)
{
    int rc = env_open(e, handlers_conf);

    if (rc)
        fail_msg("load_config: %s", moor_diag_msg(rc));
    e->f->mode = mode;
}

static void test_yields(void **state)
{
    static const int modes[] = {ANSWER_SYNC, ANSWER_ASYNC};

    (void)state;
    for (int m = 0; m < 2; m++) {
        env_t e;
        reply_t r;
        open_handlers(&e, modes[m]);
        call(&e, "steps", "\xa1k\x05", 3, 2, &r);
        OK_BYTES(&r, "\x05");
        assert_int_equal(e.f->kv_calls, 12);
        assert_int_equal(moor_lua_inflight(e.h), 0);
        /* the incr plugin, through the same cosocket path */
        call(&e, "incr",
             "\xa1"
             "c\x05",
             3, 2, &r);
        OK_BYTES(&r, "\x05");
        call(&e, "incr",
             "\xa1"
             "c\x03",
             3, 2, &r);
        OK_BYTES(&r, "\x08");
        env_close(&e);
    }
}

static void test_many_in_flight(void **state)
{
    env_t e;
    reply_t r[100];
    char args[100][8];
    int done = 0;

    (void)state;
    open_handlers(&e, ANSWER_ASYNC);
    memset(r, 0, sizeof(r));
    for (int i = 0; i < 100; i++) {
        /* steps(key_i, 1 + i % 4) */
        snprintf(args[i], sizeof(args[i]), "\xa2%02d%c", i, 1 + i % 4);
        assert_int_equal(moor_lua_call(e.h, "steps", 5, args[i], 4, 2, on_reply, &r[i]), 0);
    }
    assert_int_equal(moor_lua_inflight(e.h), 100);
    uint64_t deadline = moor_clock_mono_ms() + 10000;
    while (done < 100 && moor_clock_mono_ms() < deadline) {
        uv_run(&e.loop, UV_RUN_ONCE);
        done = 0;
        for (int i = 0; i < 100; i++)
            done += r[i].done;
    }
    assert_int_equal(done, 100);
    for (int i = 0; i < 100; i++) {
        char want = (char)(1 + i % 4);
        assert_int_equal(r[i].done, 1);
        expect_ok(&r[i], &want, 1);
    }
    assert_int_equal(moor_lua_inflight(e.h), 0);
    env_close(&e);
}

static void test_instruction_budget(void **state)
{
    static const char *const spinners[] = {"spin", "spin_pcall", "spin_helper", "tight"};
    env_t e;
    reply_t r;

    (void)state;
    open_handlers(&e, ANSWER_SYNC);
    for (int i = 0; i < 4; i++) {
        call(&e, spinners[i], "", 0, 0, &r);
        expect_err(&r, "HANDLER_TIMEOUT", "instructions");
        /* the host is fine afterwards */
        call(&e, "first", "\x2a", 1, 1, &r);
        OK_BYTES(&r, "\x2a");
    }
    assert_int_equal(moor_lua_inflight(e.h), 0);
    env_close(&e);
}

static void test_wall_budget_while_waiting(void **state)
{
    env_t e;
    reply_t r;
    uint64_t token;

    (void)state;
    open_handlers(&e, ANSWER_NEVER);
    call(&e, "slow", "\xa1k", 2, 1, &r);
    expect_err(&r, "HANDLER_TIMEOUT", "while waiting on a get");
    token = e.f->last_token;
    /* the late answer is ignored: no second reply, no crash */
    moor_lua_kv_done(e.h, token, NULL, NULL, "\xc0", 1);
    moor_lua_kv_done(e.h, token + 1, NULL, NULL, "\xc0", 1);
    moor_lua_kv_done(e.h, 0, NULL, NULL, NULL, 0);
    uv_run(&e.loop, UV_RUN_NOWAIT);
    assert_int_equal(r.done, 1);
    assert_int_equal(moor_lua_inflight(e.h), 0);

    /* a put in flight is reported as maybe applied */
    call(&e, "slowput", "\xa1k", 2, 1, &r);
    expect_err(&r, "HANDLER_TIMEOUT", "may or may not be applied");

    /* one put acknowledged, the second never: the message counts it */
    e.f->mode = ANSWER_SYNC;
    memset(&r, 0, sizeof(r));
    assert_int_equal(moor_lua_call(e.h, "slowput", 7, "\xa1k", 2, 1, on_reply, &r), 0);
    assert_int_equal(r.done, 1); /* sync answers: done before the call returned */
    OK_BYTES(&r, "\x01");
    env_close(&e);
}

/* Finished calls are pooled and a coroutine that returned normally is
 * reused by the next call: nothing of one call may show in the next, and a
 * coroutine that raised, was stopped or still waits is never reused. */
static void test_reuse(void **state)
{
    env_t e;
    reply_t r;

    (void)state;
    open_handlers(&e, ANSWER_SYNC);
    for (int i = 0; i < 3; i++) {
        call(&e, "echo", "\x01\x02\x03", 3, 3, &r);
        OK_BYTES(&r, "\x93\x01\x02\x03");
        call(&e, "echo", "", 0, 0, &r); /* no leftovers of the last call's stack */
        OK_BYTES(&r, "\x90");
        call(&e, "nothing", "", 0, 0, &r);
        OK_BYTES(&r, "\xc0");
        call(&e, "boom", "", 0, 0, &r);
        expect_err(&r, "HANDLER_ERROR", "boom: bad things");
        call(&e, "tight", "", 0, 0, &r);
        expect_err(&r, "HANDLER_TIMEOUT", "instructions");
        call(&e, "first", "\x2a", 1, 1, &r);
        OK_BYTES(&r, "\x2a");
    }
    /* stopped while it waited on a get: its coroutine is suspended */
    e.f->mode = ANSWER_NEVER;
    call(&e, "slow", "\xa1k", 2, 1, &r);
    expect_err(&r, "HANDLER_TIMEOUT", "while waiting on a get");
    e.f->mode = ANSWER_SYNC;
    call(&e, "steps", "\xa1k\x02", 3, 2, &r);
    OK_BYTES(&r, "\x02");
    call(&e, "first", "\x2b", 1, 1, &r);
    OK_BYTES(&r, "\x2b");
    /* waits answered later (the timer started at the first wait, stopped
     * at the end) on a pooled call and a reused coroutine */
    e.f->mode = ANSWER_ASYNC;
    call(&e, "steps", "\xa1k\x03", 3, 2, &r);
    OK_BYTES(&r, "\x03");
    assert_int_equal(moor_lua_inflight(e.h), 0);
    env_close(&e);
}

static void test_errors(void **state)
{
    env_t e;
    reply_t r;

    (void)state;
    open_handlers(&e, ANSWER_ASYNC);
    call(&e, "boom", "", 0, 0, &r);
    expect_err(&r, "HANDLER_ERROR", "boom: bad things");
    expect_err(&r, "HANDLER_ERROR", "conf.lua:");
    call(&e, "boom_table", "", 0, 0, &r);
    expect_err(&r, "HANDLER_ERROR", "table");
    call(&e, "badret", "", 0, 0, &r);
    expect_err(&r, "HANDLER_ERROR", "cannot encode a function at f");
    call(&e, "badput", "", 0, 0, &r);
    expect_err(&r, "HANDLER_ERROR", "moor.put: value: cannot encode a function");
    call(&e, "nope", "", 0, 0, &r);
    expect_err(&r, "NO_HANDLER", "nope");
    call(&e, "first", "\xc1", 1, 1, &r); /* malformed argument */
    expect_err(&r, "BAD_REQUEST", "malformed");
    call(&e, "first", "\x81\xc0\x01", 3, 1, &r); /* nil map key */
    expect_err(&r, "BAD_REQUEST", "nil");
    /* a kv error reaches the handler as nil, "CODE: message" */
    call(&e, "kvfail", "", 0, 0, &r);
    OK_BYTES(&r, "\x92\xc3\xb6KEY_TOO_LARGE: refused");
    call(&e, "nothing", "", 0, 0, &r);
    OK_BYTES(&r, "\xc0");
    call(&e, "echo", "\x01\xa1x\xc3", 4, 3, &r);
    OK_BYTES(&r, "\x93\x01\xa1x\xc3");
    /* resolver called from inside ops.kv while the handler waits */
    e.f->mode = ANSWER_SYNC;
    call(&e, "resolve", "", 0, 0, &r);
    OK_BYTES(&r, "\xa1"
                 "a");
    assert_int_equal(moor_lua_inflight(e.h), 0);
    env_close(&e);
}

static void test_resolve(void **state)
{
    env_t e;
    moor_buf_t out = MOOR_BUF_INIT;
    static const char sib[] = "\x93\x81\xa5value\x05\x81\xa5value\x02\x81\xa5value\x09";

    (void)state;
    open_handlers(&e, ANSWER_SYNC);
    assert_int_equal(moor_lua_resolve(e.h, "smallest", 8, sib, sizeof(sib) - 1, &out), 0);
    assert_int_equal(out.len, 1);
    assert_int_equal(out.data[0], 2);
    assert_int_equal(moor_lua_resolve(e.h, "nope", 4, sib, sizeof(sib) - 1, &out), MOOR_ENOHANDLER);
    /* a resolver that raises: values are not comparable */
    static const char bad[] = "\x92\x81\xa5value\x01\x81\xa5value\xa1x";
    assert_int_equal(moor_lua_resolve(e.h, "smallest", 8, bad, sizeof(bad) - 1, &out),
                     MOOR_EHANDLER);
    assert_non_null(strstr(moor_diag_msg(MOOR_EHANDLER), "compare"));
    assert_int_equal(out.len, 1);
    moor_buf_free(&out);
    env_close(&e);
}

static void test_free_with_pending(void **state)
{
    env_t e;
    reply_t r;

    (void)state;
    open_handlers(&e, ANSWER_NEVER);
    memset(&r, 0, sizeof(r));
    moor_lua_call(e.h, "steps", 5, "\xa1k\x01", 3, 2, on_reply, &r);
    assert_int_equal(r.done, 0);
    assert_int_equal(moor_lua_inflight(e.h), 1);
    moor_lua_free(e.h);
    e.h = NULL;
    assert_int_equal(r.done, 1);
    expect_err(&r, "SHUTTING_DOWN", "steps");
    uv_run(&e.loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&e.loop), 0);
    for (int i = 0; i < STORE_MAX; i++)
        moor_buf_free(&e.f->store[i].val);
    testutil_rmrf(e.dir);
    free(e.dir);
    free(e.f);
}

/* ---- results and logs ------------------------------------------------------------- */

static const char results_conf[] =
    "moor.cfg{ node = 'n1', limits = { value_max_mb = 1, max_frame_mb = 4 },\n"
    "          handler = { timeout_ms = 60000 } }\n"
    "local function dag() local t = {}; for i = 1, 30 do t = { t, t } end; return t end\n"
    "moor.handle('big', function(n) return string.rep('v', n) end)\n"
    "moor.handle('dag', dag)\n"
    "moor.handle('encode_dag', function() return select(2, moor.encode(dag())) end)\n"
    "moor.handle('put_dag', function() return moor.put('k', dag()) end)\n"
    "moor.resolver('huge', function(s) return string.rep('v', 2 * 1024 * 1024) end)\n";

/* A result larger than limits.value_max, or than a reply frame can hold,
 * is refused (VALUE_TOO_LARGE), never sent; encoding stops at the bound,
 * so a value of 2^30 shared leaves costs a megabyte's work, not 2^30. */
static void test_result_limits(void **state)
{
    static const char sib[] = "\x91\x81\xa5value\x01";
    moor_buf_t out = MOOR_BUF_INIT;
    env_t e;
    reply_t r;
    int rc = env_open(&e, results_conf);

    (void)state;
    if (rc)
        fail_msg("load_config: %s", moor_diag_msg(rc));
    e.f->mode = ANSWER_SYNC;
    call(&e, "big", "\xce\x00\x10\x00\x00", 5, 1, &r); /* 1 MiB of 'v': 5 bytes over */
    expect_err(&r, "VALUE_TOO_LARGE", "larger than 1048576 bytes (limits.value_max)");
    assert_int_equal(r.res.len, 0);
    call(&e, "big", "\xcd\x03\xe8", 3, 1, &r);
    assert_string_equal(r.code, "");
    assert_int_equal(r.res.len, 1003);
    call(&e, "dag", "", 0, 0, &r);
    expect_err(&r, "VALUE_TOO_LARGE", "limits.value_max");
    call(&e, "encode_dag", "", 0, 0, &r);
    if (r.code[0] || !memmem(r.res.data, r.res.len, "larger than 4194304 bytes", 25))
        fail_msg("moor.encode of 2^30 leaves: %s %s", r.code, r.msg);
    call(&e, "put_dag", "", 0, 0, &r);
    expect_err(&r, "HANDLER_ERROR", "moor.put: value: the encoding is larger than 4194304 bytes");
    rc = moor_lua_resolve(e.h, "huge", 4, sib, sizeof(sib) - 1, &out);
    assert_int_equal(rc, MOOR_EVALTOOBIG);
    assert_int_equal(out.len, 0);
    env_close(&e);

    /* a value_max no frame could carry is a config mistake, refused */
    rc = env_open(&e,
                  "moor.cfg{ node = 'n1', limits = { value_max_mb = 16, max_frame_mb = 16 } }\n");
    assert_int_equal(rc, MOOR_EINVAL);
    assert_non_null(strstr(moor_diag_msg(rc), "limits.value_max_mb (16) must leave room in a "
                                              "request frame: raise limits.max_frame_mb (16)"));
    env_close(&e);
    rc = env_open(&e, "moor.cfg{ node = 'n1', limits = { value_max_mb = 200, "
                      "max_frame_mb = 512 } }\n");
    assert_int_equal(rc, MOOR_EINVAL);
    assert_non_null(strstr(moor_diag_msg(rc), "is over what a client reads back"));
    moor_buf_free(&out);
    env_close(&e);
}

/* moor.log escapes control characters, in the message and in the chunk
 * name a handler can choose: one call is one line. */
/* ---- what a config registered (moor reload compares two hosts) --------------------- */

typedef struct listed {
    char names[8][32];
    uint64_t digests[8];
    unsigned n;
} listed_t;

static void on_entry(void *ud, const char *name, size_t nlen, uint64_t digest)
{
    listed_t *l = ud;

    assert_true(l->n < 8 && nlen < 32);
    memcpy(l->names[l->n], name, nlen);
    l->names[l->n][nlen] = '\0';
    l->digests[l->n++] = digest;
}

/* The digest of name in what text registers (kind: MOOR_LUA_*), and
 * how many entries there are. */
static uint64_t digest_of(const char *text, int kind, const char *name, unsigned *count)
{
    env_t e;
    listed_t l = {0};
    uint64_t d = 0;
    unsigned listed;
    int rc = env_open(&e, text);

    if (rc)
        fail_msg("load_config: %s", moor_diag_msg(rc));
    listed = moor_lua_catalog(e.h, kind, on_entry, &l);
    assert_int_equal(listed, l.n);
    for (unsigned i = 0; i < l.n; i++)
        if (strcmp(l.names[i], name) == 0)
            d = l.digests[i];
    *count = l.n;
    env_close(&e);
    return d;
}

static void test_catalog(void **state)
{
    static const char base[] =
        "moor.cfg{ node = 'n1', plugins = { 'resolvers.lww' } }\n"
        "moor.handle('a', function(x) return x end)\n"
        "moor.handle('b', function() return 1 end, { instructions = 50000 })\n"
        "moor.resolver('r', function(s) return s[1].value end)\n";
    static const char body[] = /* a's body changed */
        "moor.cfg{ node = 'n1', plugins = { 'resolvers.lww' } }\n"
        "moor.handle('a', function(x) return x + 1 end)\n"
        "moor.handle('b', function() return 1 end, { instructions = 50000 })\n"
        "moor.resolver('r', function(s) return s[1].value end)\n";
    static const char budget[] = /* b's budget changed */
        "moor.cfg{ node = 'n1', plugins = { 'resolvers.lww' } }\n"
        "moor.handle('a', function(x) return x end)\n"
        "moor.handle('b', function() return 1 end, { instructions = 60000 })\n"
        "moor.resolver('r', function(s) return s[1].value end)\n";
    unsigned n;
    uint64_t a = digest_of(base, MOOR_LUA_HANDLERS, "a", &n);

    (void)state;
    assert_int_equal(n, 2);
    assert_true(a != 0);
    /* the same code in another host: the same digests */
    assert_true(digest_of(base, MOOR_LUA_HANDLERS, "a", &n) == a);
    assert_true(digest_of(base, MOOR_LUA_HANDLERS, "b", &n) ==
                digest_of(base, MOOR_LUA_HANDLERS, "b", &n));
    assert_true(digest_of(base, MOOR_LUA_RESOLVERS, "lww", &n) ==
                digest_of(base, MOOR_LUA_RESOLVERS, "lww", &n));
    assert_int_equal(n, 2); /* r and the plugin */
    assert_true(digest_of(body, MOOR_LUA_HANDLERS, "a", &n) != a);
    assert_true(digest_of(body, MOOR_LUA_HANDLERS, "b", &n) ==
                digest_of(base, MOOR_LUA_HANDLERS, "b", &n));
    assert_true(digest_of(budget, MOOR_LUA_HANDLERS, "b", &n) !=
                digest_of(base, MOOR_LUA_HANDLERS, "b", &n));
    assert_true(digest_of(budget, MOOR_LUA_HANDLERS, "a", &n) == a);
    assert_true(digest_of(base, MOOR_LUA_RESOLVERS, "r", &n) !=
                digest_of(base, MOOR_LUA_RESOLVERS, "lww", &n));
}

static void test_log_one_line(void **state)
{
    env_t e;
    reply_t r;
    char path[4300], text[4096];
    int fd, level = moor_log_get_level(), lines = 0;
    ssize_t n;
    int rc = env_open(
        &e, "moor.cfg{ node = 'n1' }\n"
            "moor.handle('forge', function()\n"
            "  moor.log('warn', 'first\\n2099-01-01T00:00:00.000Z ERROR [n1] x.c:1: forged\\r\\tend"
            "\\1\\127 done')\n"
            "  load(\"moor.log('warn', 'from a chunk')\", '=evil\\nFORGED')()\n"
            "end)\n");

    (void)state;
    if (rc)
        fail_msg("load_config: %s", moor_diag_msg(rc));
    snprintf(path, sizeof(path), "%s/log", e.dir);
    fd = open(path, O_CREAT | O_TRUNC | O_RDWR, 0600);
    assert_true(fd >= 0);
    moor_log_set_fd(fd);
    moor_log_set_level(MOOR_LOG_INFO);
    call(&e, "forge", "", 0, 0, &r);
    moor_log_set_fd(2);
    moor_log_set_level(level);
    assert_string_equal(r.code, "");
    n = pread(fd, text, sizeof(text) - 1, 0);
    close(fd);
    assert_true(n > 0);
    text[n] = '\0';
    printf("%s", text);
    for (ssize_t i = 0; i < n; i++)
        lines += text[i] == '\n';
    assert_int_equal(lines, 2);
    assert_non_null(strstr(text, "first\\n2099-01-01T00:00:00.000Z ERROR"));
    assert_non_null(strstr(text, "forged\\r\\tend\\x01\\x7f done"));
    assert_non_null(strstr(text, "evil\\nFORGED:1: from a chunk"));
    env_close(&e);
}

/* ---- sandbox -------------------------------------------------------------------- */

static const char sandbox_conf[] =
    "moor.cfg{ node = 'n1' }\n"
    "local checks = {\n"
    "  io = function() return io == nil end,\n"
    "  os_execute = function() return os.execute == nil and os.getenv == nil end,\n"
    "  os_ok = function() return type(os.time()) == 'number' and type(os.clock()) == 'number' "
    "end,\n"
    "  ffi = function() local ok, e = pcall(require, 'ffi'); return not ok and e:find('not found') "
    "end,\n"
    "  debug = function() return debug == nil and not pcall(require, 'debug') end,\n"
    "  jit = function() return jit == nil and not pcall(require, 'jit') end,\n"
    "  loadfile = function() return loadfile == nil and dofile == nil and loadstring == nil end,\n"
    "  dump = function() return string.dump == nil and ('').dump == nil end,\n"
    "  string_mt = function() return getmetatable('') == false end,\n"
    "  string_ok = function() return ('abc'):upper() == 'ABC' end,\n"
    "  fenv = function() return setfenv == nil and getfenv == nil end,\n"
    "  g = function() return _G.io == nil and _G.require == require and rawget(_G, 'require') == "
    "nil "
    "end,\n"
    "  pkg = function() return package == nil and collectgarbage == nil and coroutine == nil end,\n"
    "  req_path = function() return not pcall(require, '../../etc/passwd')\n"
    "                     and not pcall(require, 'os') and not pcall(require, 'io') end,\n"
    "  req_plugin = function() return type(require('resolvers.lww')) == 'function'\n"
    "                     and require('plugins.resolvers.lww') ~= nil end,\n"
    "  load_text = function() return load('return 1 + 1')() == 2 end,\n"
    "  load_env = function() return load('return io')() == nil end,\n"
    "  load_bin = function() local f, e = load('\\27LJ\\2'); return f == nil and "
    "e:find('bytecode') end,\n"
    "}\n"
    "moor.handle('escapes', function()\n"
    "  local failed = {}\n"
    "  for name, f in pairs(checks) do\n"
    "    local ok, res = pcall(f)\n"
    "    if not ok or not res then failed[#failed + 1] = name .. ': ' .. tostring(res) end\n"
    "  end\n"
    "  table.sort(failed)\n"
    "  return table.concat(failed, '; ')\n"
    "end)\n"
    "moor.handle('load_code', function(code)\n"
    "  local f, e = load(code)\n"
    "  if f then return 'loaded' end\n"
    "  return e\n"
    "end)\n";

static void test_sandbox(void **state)
{
    env_t e;
    reply_t r;
    lua_State *L;
    const char *bc;
    size_t bclen;
    moor_buf_t args = MOOR_BUF_INIT;
    msgpack_packer pk;

    (void)state;
    if (env_open(&e, sandbox_conf))
        fail_msg("load_config: %s", moor_diag_msg(MOOR_EINVAL));
    call(&e, "escapes", "", 0, 0, &r);
    if (r.code[0] || r.res.len != 1)
        fail_msg("sandbox checks failed: %s %s %.*s", r.code, r.msg, (int)r.res.len, r.res.data);
    OK_BYTES(&r, "\xa0");

    /* real bytecode from string.dump in another state is refused */
    L = luaL_newstate();
    luaL_openlibs(L);
    assert_int_equal(luaL_dostring(L, "return string.dump(function() return io end)"), 0);
    bc = lua_tolstring(L, -1, &bclen);
    moor_mp_packer_init(&pk, &args);
    msgpack_pack_bin(&pk, bclen);
    msgpack_pack_bin_body(&pk, bc, bclen);
    call(&e, "load_code", args.data, args.len, 1, &r);
    if (r.code[0] || !memmem(r.res.data, r.res.len, "bytecode", 8))
        fail_msg("bytecode not refused: %s %.*s", r.code, (int)r.res.len, r.res.data);
    lua_close(L);
    moor_buf_free(&args);
    env_close(&e);
}

static void test_sandbox_opt_in(void **state)
{
    env_t e;
    reply_t r;
    int rc = env_open(
        &e,
        "moor.cfg{ node = 'n1', sandbox = { io = true, os = true, ffi = true, debug = true } }\n"
        "moor.handle('probe', function()\n"
        "  return type(io.open) == 'function' and type(os.getenv) == 'function'\n"
        "     and type(require('ffi').new) == 'function' and type(debug.getinfo) == 'function'\n"
        "end)\n");

    (void)state;
    if (rc)
        fail_msg("load_config: %s", moor_diag_msg(rc));
    call(&e, "probe", "", 0, 0, &r);
    OK_BYTES(&r, "\xc3");
    env_close(&e);
}

/* ---- codec ---------------------------------------------------------------------- */

/* Round trips run as Lua in a plain state with the codec registered as c. */
static const char codec_script[] =
    "local ffi = require('ffi')\n"
    "local function same(a, b)\n"
    "  if type(a) ~= type(b) then return false end\n"
    "  if type(a) == 'number' then\n"
    "    if a ~= a then return b ~= b end\n"
    "    return a == b and (a ~= 0 or 1 / a == 1 / b)\n"
    "  end\n"
    "  if type(a) == 'cdata' then return tostring(ffi.typeof(a)) == tostring(ffi.typeof(b)) and a "
    "== b end\n"
    "  if type(a) ~= 'table' then return a == b end\n"
    "  for k, v in pairs(a) do if not same(v, b[k]) then return false end end\n"
    "  for k in pairs(b) do if a[k] == nil then return false end end\n"
    "  return true\n"
    "end\n"
    "local function rt(v)\n"
    "  local s, err = c.encode(v)\n"
    "  if not s then error('encode failed: ' .. err, 2) end\n"
    "  local d, pos = c.decode(s)\n"
    "  if pos ~= #s + 1 then error('decode: ' .. tostring(pos), 2) end\n"
    "  if not same(v, d) then error('round trip changed ' .. tostring(v) .. ' into ' .. "
    "tostring(d), 2) end\n"
    "  return d, s\n"
    "end\n"
    "for _, v in ipairs{ true, false, 0, 1, -1, 127, 128, -32, -33, 255, 256, 65535, 65536,\n"
    "                     2^32 - 1, 2^32, -2^31, -2^31 - 1, 2^53, -2^53, 0.5, -1.25, 1e300,\n"
    "                     1/0, -1/0, 0/0, -0.0, '', 'abc', 'h\\195\\169llo', '\\255\\0\\1',\n"
    "                     string.rep('x', 70000) } do rt(v) end\n"
    "assert(rt(nil) == nil)\n"
    "rt(0x7fffffffffffffffLL); rt(-0x8000000000000000LL); rt(0xffffffffffffffffULL)\n"
    "rt(2^53 * 4 * ffi.new('uint64_t', 1)); rt(ffi.new('int64_t', -2^60))\n"
    "assert(select(2, rt(0x7fffffffffffffffLL)) == "
    "'\\211\\127\\255\\255\\255\\255\\255\\255\\255')\n"
    "assert(select(2, rt(0xffffffffffffffffULL)) == '\\207' .. string.rep('\\255', 8))\n"
    "assert(c.decode('\\211\\128\\0\\0\\0\\0\\0\\0\\0') == -0x8000000000000000LL)\n"
    "local big = c.decode('\\207\\0\\32\\0\\0\\0\\0\\0\\1')\n"
    "assert(type(big) == 'cdata' and big == 9007199254740993ULL, tostring(big))\n"
    "assert(c.decode('\\207\\0\\32\\0\\0\\0\\0\\0\\0') == 2^53)\n"
    "assert(c.encode(5LL) == '\\5')\n"
    "assert(c.decode('\\202\\63\\192\\0\\0') == 1.5)\n"
    "assert(c.encode('abc') == '\\163abc' and c.encode('\\255') == '\\196\\1\\255')\n"
    "assert(c.encode(c.bin('abc')) == '\\196\\3abc')\n"
    "assert(c.decode('\\196\\3abc') == 'abc')\n"
    "local a = rt({1, 'two', {3}, {x = 4}})\n"
    "assert(getmetatable(a) == getmetatable(c.array()) and getmetatable(a[4]) == "
    "getmetatable(c.map()))\n"
    "assert(c.encode({}) == '\\144' and c.encode(c.map{}) == '\\128')\n"
    "local m = rt(c.map{}); assert(c.encode(m) == '\\128')\n"
    "assert(c.encode({[1] = 1, [3] = 3}):byte(1) == 0x82)\n"
    "assert(c.encode(c.array{[1] = 1, [3] = 3}) == '\\147\\1\\192\\3')\n"
    "assert(c.encode(c.map{1, 2}) == '\\130\\1\\1\\2\\2')\n"
    "rt({a = {b = {c = {1, 2, {d = true}}}}, [10] = 'ten', [true] = false})\n"
    "local e = c.decode(c.encode(c.ext(7, 'xyz'))); assert(e.ext == 7 and e.data == 'xyz')\n"
    "local deep = {}; local cur = deep\n"
    "for i = 2, 64 do cur[1] = {}; cur = cur[1] end\n"
    "assert(c.encode(deep))\n"
    "cur[1] = {}\n"
    "local s, err = c.encode(deep); assert(s == nil and err:find('deeper than 64'), err)\n"
    "assert(c.decode(string.rep('\\145', 64) .. '\\1'))\n"
    "local v, err = c.decode(string.rep('\\145', 65) .. '\\1'); assert(v == nil and "
    "err:find('deeper'), err)\n"
    "local t = {}; t.x = {t}\n"
    "local s, err = c.encode(t); assert(s == nil and err == 'cannot encode a cycle (a table that "
    "contains itself) at x[1]', err)\n"
    "local shared = {1}; assert(c.encode({shared, shared}))\n"
    "local s, err = c.encode({1, 2, {x = print}}); assert(err == 'cannot encode a function at "
    "[3].x', err)\n"
    "local s, err = c.encode(coroutine.create(print)); assert(err == 'cannot encode a thread', "
    "err)\n"
    "local s, err = c.encode({u = io.stdout}); assert(err == 'cannot encode a userdata at u', "
    "err)\n"
    "local s, err = c.encode(ffi.new('int[1]')); assert(err:find('cdata'), err)\n"
    "local s, err = c.encode({[print] = 1}); assert(err:find('function'), err)\n"
    "for _, bad in ipairs{'\\193', '\\146\\1', '\\217\\5ab', '\\129\\192\\1', ''} do\n"
    "  local v, err = c.decode(bad); assert(v == nil and type(err) == 'string', bad)\n"
    "end\n"
    "return 'ok'\n";

static void test_codec(void **state)
{
    lua_State *L = luaL_newstate();

    (void)state;
    luaL_openlibs(L);
    assert_int_equal(moor_codec_init(L), 0);
    lua_newtable(L);
    moor_codec_register(L);
    lua_setglobal(L, "c");
    if (luaL_dostring(L, codec_script))
        fail_msg("codec script: %s", lua_tostring(L, -1));
    assert_string_equal(lua_tostring(L, -1), "ok");
    lua_close(L);
}

/* Decoding random bytes never crashes and leaves the stack balanced. */
static void test_codec_garbage(void **state)
{
    lua_State *L = luaL_newstate();
    uint64_t rng = testutil_rand(&seed_state);
    char buf[64];

    (void)state;
    luaL_openlibs(L);
    moor_codec_init(L);
    for (int i = 0; i < 20000; i++) {
        size_t n = testutil_rand(&rng) % sizeof(buf);
        const char *p = buf;
        for (size_t j = 0; j < n; j++)
            buf[j] = (char)testutil_rand(&rng);
        int top = lua_gettop(L);
        int rc = moor_codec_decode(L, &p, buf + n);
        assert_int_equal(lua_gettop(L), top + (rc == 0));
        if (rc == 0) {
            moor_buf_t b = MOOR_BUF_INIT;
            moor_codec_encode(L, -1, 0, &b); /* whatever came out encodes or says why */
            moor_buf_free(&b);
            lua_pop(L, 1);
        }
    }
    lua_close(L);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_config_n_max),
        cmocka_unit_test(test_codec),
        cmocka_unit_test(test_codec_garbage),
        cmocka_unit_test(test_config_good),
        cmocka_unit_test(test_config_defaults),
        cmocka_unit_test(test_config_levels),
        cmocka_unit_test(test_config_args),
        cmocka_unit_test(test_config_bad),
        cmocka_unit_test(test_yields),
        cmocka_unit_test(test_many_in_flight),
        cmocka_unit_test(test_instruction_budget),
        cmocka_unit_test(test_wall_budget_while_waiting),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_reuse),
        cmocka_unit_test(test_resolve),
        cmocka_unit_test(test_free_with_pending),
        cmocka_unit_test(test_sandbox),
        cmocka_unit_test(test_sandbox_opt_in),
        cmocka_unit_test(test_result_limits),
        cmocka_unit_test(test_log_one_line),
        cmocka_unit_test(test_catalog),
    };

    find_root();
    seed_state = testutil_seed("test_host");
    return cmocka_run_group_tests(tests, NULL, NULL);
}
