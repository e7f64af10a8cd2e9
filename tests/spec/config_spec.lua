-- Specs for lua/moor/config.lua: the config schema and its messages,
-- run directly in busted (no C).  Plugins load through the normal require
-- (lpath has plugins/?.lua), as the node's sandboxed require does.

local config = require("moor.config")

-- Runs the config functions in f(api) and returns the normalised table,
-- or raises with the validation message.
local function load(f, opts)
    local c = config.new(opts)
    f(c:api())
    return c:finish()
end

local function fails(f, needle, opts)
    local ok, err = pcall(load, f, opts)
    assert.is_false(ok, "expected an error containing: " .. needle)
    assert.is_truthy(tostring(err):find(needle, 1, true),
                     "message '" .. tostring(err) .. "' lacks '" .. needle .. "'")
end

describe("moor.config", function()
    it("accepts a full config and normalises it", function()
        local t = load(function(m)
            m.cfg({
                node = "n1", listen = "127.0.0.2:7711", data_dir = "d/n1",
                seeds = { "127.0.0.3:7700", "[::1]:7000" },
                engine = { memtable_mb = 8, cache_mb = 16, sync = "always", sync_ms = 5,
                           compression = 1, bloom_bits = 12, wal_recovery = "stop" },
                limits = { max_frame_mb = 4, key_max = 1000, value_max_mb = 2, max_conns = 10,
                           idle_timeout_ms = 5000, max_inflight = 7 },
                auth_token = "sekrit", log = { level = "warn", file = "x.log" },
                handler = { instructions = 50000, timeout_ms = 250, memory_mb = 64 },
                sandbox = { io = false, os = true }, hints = { window_s = 10 },
                plugins = { "resolvers.lww", "resolvers.set_union", "handlers.incr", "handlers.cas" },
            })
            m.space("carts", { n = 3, r = 2, w = 2, resolver = "set_union", sloppy = false })
            m.resolver("mine", function(s) return s[1].value end)
            m.space("default", { resolver = "mine" })
            m.handle("hello", function() return "hi" end, { timeout_ms = 100 })
            m.gossip({ period_ms = 400, probe_timeout_ms = 150, gossip_fanout = 3, indirect_k = 2 })
        end)
        assert.are.equal("n1", t.node)
        assert.are.equal("127.0.0.2", t.listen_host)
        assert.are.equal(7711, t.listen_port)
        assert.are.equal("always", t.engine.sync)
        assert.are.equal("stop", t.engine.wal_recovery)
        assert.are.equal(7, t.limits.max_inflight)
        assert.are.equal("warn", t.log.level)
        assert.are.equal(true, t.sandbox.os)
        assert.are.equal(64, t.handler.memory_mb)
        assert.are.same({ name = "carts", n = 3, r = 2, w = 2, resolver = "set_union", sloppy = false },
                        t.spaces[1])
        assert.are.equal("mine", t.spaces[2].resolver)
        assert.are.equal("function", type(t.resolvers.lww))
        assert.are.equal("function", type(t.resolvers.set_union))
        assert.are.equal("function", type(t.handlers.incr.fn))
        assert.are.equal("function", type(t.handlers.cas.fn))
        assert.are.equal(100, t.handlers.hello.timeout_ms)
        assert.are.equal(3, t.gossip.gossip_fanout)
        assert.are.equal(400, t.gossip.period_ms)
        assert.are.equal(10, t.hints.window_s)
        assert.are.equal(false, t.spaces[1].sloppy)
    end)

    it("takes sibling limits at the top and per space", function()
        local t = load(function(m)
            m.cfg({ node = "n1", sibling_warn = 10, sibling_max = 50 })
            m.space("s", { sibling_warn = 5, sibling_max = 512 })
        end)
        assert.are.equal(10, t.sibling_warn)
        assert.are.equal(50, t.sibling_max)
        assert.are.equal(5, t.spaces[1].sibling_warn)
        assert.are.equal(512, t.spaces[1].sibling_max)
    end)

    it("needs only a node id", function()
        local t = load(function(m) m.cfg({ node = "solo" }) end)
        assert.are.equal("solo", t.node)
        assert.is_nil(t.listen_host)
        assert.are.same({}, t.spaces)
    end)

    it("names unknown keys", function()
        fails(function(m) m.cfg({ node = "n1", lisen = "127.0.0.1:1" }) end,
              "moor.cfg: unknown key 'lisen'")
        fails(function(m) m.cfg({ node = "n1", engine = { synk = "always" } }) end,
              "moor.cfg: unknown key 'engine.synk'")
        fails(function(m) m.cfg({ node = "n1" }); m.space("s", { rr = 1 }) end,
              "moor.space('s'): unknown key 'rr'")
        fails(function(m) m.cfg({ node = "n1" }); m.gossip({ fanut = 3 }) end,
              "moor.gossip: unknown key 'fanut'")
        fails(function(m) m.cfg({ node = "n1", hints = { windows = 3 } }) end,
              "moor.cfg: unknown key 'hints.windows'")
    end)

    it("says what type or value was expected", function()
        fails(function(m) m.cfg({ node = "n1", engine = { sync = "sometimes" } }) end,
              "moor.cfg: engine.sync must be one of always, interval, none, got 'sometimes'")
        fails(function(m) m.cfg({ node = "n1", engine = { wal_recovery = "skip" } }) end,
              "moor.cfg: engine.wal_recovery must be one of keep, stop, got 'skip'")
        fails(function(m) m.cfg({ node = "n1", limits = { max_conns = "many" } }) end,
              "moor.cfg: limits.max_conns must be an integer in 1..1000000, got 'many'")
        fails(function(m) m.cfg({ node = "n1", engine = { memtable_mb = 1.5 } }) end,
              "moor.cfg: engine.memtable_mb must be an integer")
        fails(function(m) m.cfg({ node = "n1", sandbox = { io = "yes" } }) end,
              "moor.cfg: sandbox.io must be true or false, got 'yes'")
        fails(function(m) m.cfg({ node = "n1", log = { level = "loud" } }) end,
              "moor.cfg: log.level must be one of debug, info, warn, error, off, got 'loud'")
        fails(function(m) m.cfg({ node = "n1", engine = "fast" }) end,
              "moor.cfg: engine must be a table, got 'fast'")
        fails(function(m) m.cfg("n1") end, "moor.cfg: expects a table, got 'n1'")
        fails(function(m) m.cfg({ node = "n1", hints = { max_mb = 0 } }) end,
              "moor.cfg: hints.max_mb must be an integer in 1..1048576, got 0")
        fails(function(m) m.cfg({ node = "n1" }); m.gossip({ indirect_k = 17 }) end,
              "moor.gossip: indirect_k must be an integer in 0..16, got 17")
        fails(function(m) m.cfg({ node = "n1" }); m.space("s", { sloppy = "no" }) end,
              "moor.space('s'): sloppy must be true or false, got 'no'")
        fails(function(m) m.cfg({ node = "bad id!" }) end, "moor.cfg: node must be a node id")
        fails(function(m) m.cfg({ node = "n1", sibling_max = 513 }) end,
              "moor.cfg: sibling_max must be an integer in 1..512, got 513")
        fails(function(m) m.cfg({ node = "n1" }); m.space("s", { sibling_warn = 0 }) end,
              "moor.space('s'): sibling_warn must be an integer in 1..512, got 0")
        fails(function(m)
            m.cfg({ node = "n1" }); m.space("s", { sibling_warn = 50, sibling_max = 40 })
        end, "moor.space('s'): sibling_warn (50) must not exceed sibling_max (40)")
        fails(function(m) m.cfg({ node = "n1", plugins = "resolvers.lww" }) end,
              "moor.cfg: plugins must be a list")
    end)

    it("takes the slow log's threshold and length", function()
        local t = load(function(m)
            m.cfg({ node = "n1", slowlog = { threshold_ms = 0.5, max_len = 64 } })
        end)
        assert.are.equal(0.5, t.slowlog.threshold_ms)
        assert.are.equal(64, t.slowlog.max_len)
        t = load(function(m) m.cfg({ node = "n1", slowlog = { threshold_ms = -1 } }) end)
        assert.are.equal(-1, t.slowlog.threshold_ms)
        fails(function(m) m.cfg({ node = "n1", slowlog = { threshold_ms = -2 } }) end,
              "moor.cfg: slowlog.threshold_ms must be a number in -1..3600000, got -2")
        fails(function(m) m.cfg({ node = "n1", slowlog = { max_len = 0 } }) end,
              "moor.cfg: slowlog.max_len must be an integer in 1..100000, got 0")
        fails(function(m) m.cfg({ node = "n1", slowlog = { len = 3 } }) end,
              "moor.cfg: unknown key 'slowlog.len'")
    end)

    it("requires a node id", function()
        fails(function(m) m.cfg({ listen = "127.0.0.1:7700" }) end, "moor.cfg: node is required")
        fails(function() end, "never called moor.cfg")
    end)

    it("checks listen addresses", function()
        for _, bad in ipairs({ "127.0.0.1", "127.0.0.1:65536", "300.1.1.1:80", "localhost:80",
                               "1.2.3:80", "[::1]", 7700 }) do
            fails(function(m) m.cfg({ node = "n1", listen = bad }) end,
                  "moor.cfg: listen must be 'host:port'")
        end
        local t = load(function(m) m.cfg({ node = "n1", listen = "[::1]:0" }) end)
        assert.are.equal("::1", t.listen_host)
        assert.are.equal(0, t.listen_port)
    end)

    it("takes an HTTP port (metrics and the status page)", function()
        local t = load(function(m) m.cfg({ node = "n1", http_listen = "127.0.0.1:7780" }) end)
        assert.are.equal("127.0.0.1", t.http_listen_host)
        assert.are.equal(7780, t.http_listen_port)
        assert.is_nil(t.http_listen)
        t = load(function(m) m.cfg({ node = "n1" }) end)
        assert.is_nil(t.http_listen_host)
        for _, bad in ipairs({ "7780", "localhost:7780", "127.0.0.1:70000", 7780, true }) do
            fails(function(m) m.cfg({ node = "n1", http_listen = bad }) end,
                  "moor.cfg: http_listen must be 'host:port'")
        end
    end)

    it("takes a RESP port and its databases", function()
        local t = load(function(m)
            m.cfg({ node = "n1", resp_listen = "127.0.0.1:6379",
                    resp_databases = { "default", "sessions" } })
        end)
        assert.are.equal("127.0.0.1", t.resp_listen_host)
        assert.are.equal(6379, t.resp_listen_port)
        assert.are.same({ "default", "sessions" }, t.resp_databases)
        assert.is_nil(t.resp_listen)
        t = load(function(m) m.cfg({ node = "n1" }) end)
        assert.is_nil(t.resp_listen_host)
        for _, bad in ipairs({ "6379", "localhost:6379", "127.0.0.1:70000", 6379 }) do
            fails(function(m) m.cfg({ node = "n1", resp_listen = bad }) end,
                  "moor.cfg: resp_listen must be 'host:port'")
        end
        fails(function(m) m.cfg({ node = "n1", resp_databases = {} }) end,
              "moor.cfg: resp_databases must name at least one keyspace")
        fails(function(m) m.cfg({ node = "n1", resp_databases = { "default", "" } }) end,
              "moor.cfg: resp_databases[2] must be a keyspace name")
        fails(function(m) m.cfg({ node = "n1", resp_databases = "default" }) end,
              "moor.cfg: resp_databases must be a list")
    end)

    it("checks spaces and their resolvers", function()
        fails(function(m) m.cfg({ node = "n1" }); m.space("carts", { resolver = "set_union" }) end,
              "moor.space('carts'): resolver 'set_union' is not registered")
        fails(function(m) m.cfg({ node = "n1" }); m.space("s", { n = 1, r = 2 }) end,
              "must not exceed n")
        fails(function(m) m.cfg({ node = "n1" }); m.space("s", { n = 0 }) end,
              "moor.space('s'): n must be an integer in 1..16")
        fails(function(m) m.cfg({ node = "n1" }); m.space("", {}) end, "moor.space: name must be")
        -- a resolver may be registered after the space that names it
        local t = load(function(m)
            m.cfg({ node = "n1" })
            m.space("s", { resolver = "later" })
            m.resolver("later", function() end)
        end)
        assert.are.equal("later", t.spaces[1].resolver)
    end)

    it("loads plugins by name and reports missing or bad ones", function()
        fails(function(m) m.cfg({ node = "n1", plugins = { "resolvers.nope" } }) end,
              "moor.cfg: plugin 'resolvers.nope' not found")
        fails(function(m) m.cfg({ node = "n1", plugins = { "things.x" } }) end,
              "is not a resolver or a handler")
        fails(function(m) m.cfg({ node = "n1", plugins = { "handlers.x" } }) end,
              "must return a function, got table",
              { require = function() return {} end })
        fails(function(m) m.cfg({ node = "n1", plugins = { "handlers.x" } }) end,
              "failed to load: kaput",
              { require = function() error("kaput", 0) end })
    end)

    it("keeps each resolver's law check options (moor.resolver's third argument)", function()
        local gen = function(rng) return rng:int(1, 3) end
        local t = load(function(m)
            m.cfg({ node = "n1", plugins = { "resolvers.lww" } })
            m.resolver("a", function() end)
            m.resolver("b", function() end, { values = "number", laws = { "commutative" }, runs = 10 })
            m.resolver("c", function() end, { values = gen })
        end)
        assert.are.same({ plugin = "resolvers.lww" }, t.resolver_checks.lww)
        assert.are.same({}, t.resolver_checks.a)
        assert.are.same({ values = "number", laws = { "commutative" }, runs = 10 }, t.resolver_checks.b)
        assert.are.equal(gen, t.resolver_checks.c.values)
        fails(function(m) m.cfg({ node = "n1" }); m.resolver("x", function() end, { values = "numbers" }) end,
              "moor.resolver('x'): values must be one of any, number, integer, string, list, map, counter, got 'numbers'")
        fails(function(m) m.cfg({ node = "n1" }); m.resolver("x", function() end, { laws = { "total" } }) end,
              "moor.resolver('x'): laws[1] must be one of commutative, associative, idempotent")
        fails(function(m) m.cfg({ node = "n1" }); m.resolver("x", function() end, { runs = 0 }) end,
              "moor.resolver('x'): runs must be an integer in 1..100000")
        fails(function(m) m.cfg({ node = "n1" }); m.resolver("x", function() end, { seed = 1 }) end,
              "moor.resolver('x'): unknown key 'seed'")
        fails(function(m) m.cfg({ node = "n1" }); m.resolver("x", function() end, "number") end,
              "moor.resolver('x'): expects a table")
    end)

    it("checks handlers, resolvers and budgets", function()
        fails(function(m) m.cfg({ node = "n1" }); m.handle("h", 42) end,
              "moor.handle('h'): expects a function, got number")
        fails(function(m) m.cfg({ node = "n1" }); m.resolver("r", "x") end,
              "moor.resolver('r'): expects a function")
        fails(function(m) m.cfg({ node = "n1" }); m.handle("h", print, { instructions = 5 }) end,
              "moor.handle('h'): instructions must be an integer in 10000..")
        fails(function(m) m.cfg({ node = "n1" }); m.handle("h", print, { timeout = 5 }) end,
              "moor.handle('h'): unknown key 'timeout'")
        fails(function(m) m.cfg({ node = "n1", handler = { memory_mb = 4 } }) end,
              "moor.cfg: handler.memory_mb must be an integer in 8..65536, got 4")
        fails(function(m) m.cfg({ node = "n1", handler = { memory_mb = 1.5 } }) end,
              "handler.memory_mb must be an integer in 8..65536, got 1.5")
        fails(function(m) m.handle("h", print, { memory_mb = 64 }) end,
              "moor.handle('h'): unknown key 'memory_mb'")
    end)

    it("refuses a second moor.cfg", function()
        fails(function(m) m.cfg({ node = "n1" }); m.cfg({ node = "n2" }) end, "called twice")
    end)

    it("tells the host about sandbox opt-ins", function()
        local seen
        load(function(m) m.cfg({ node = "n1", sandbox = { ffi = true } }) end,
             { on_sandbox = function(s) seen = s end })
        assert.are.same({ ffi = true }, seen)
    end)

    it("says what a config raised when it was not a message", function()
        local cases = {
            { nil, "config error: the config raised nil instead of a message" },
            { 42, "config error: the config raised a number: 42" },
            { true, "config error: the config raised a boolean: true" },
            { {}, "config error: the config raised a table: {}" },
            { { code = 7, why = "disk" }, 'config error: the config raised a table: {code = 7, why = "disk"}' },
            { { 1, "two\nlines" }, 'config error: the config raised a table: {[1] = 1, [2] = "two\\nlines"}' },
            { setmetatable({}, { __tostring = function() return "my error" end }),
              "config error: the config raised a table: my error" },
            { setmetatable({}, { __tostring = function() error("bad", 0) end }),
              "config error: the config raised a table: (its __tostring failed: bad)" },
            { print, "config error: the config raised a function" },
            { "conf.lua:3: a message", "conf.lua:3: a message" },
        }
        for _, case in ipairs(cases) do
            assert.are.equal(case[2], config.describe_error(case[1]))
        end
        local long = {}
        for i = 1, 20 do long["field" .. i] = string.rep("x", 30) end
        local s = config.describe_error(long)
        assert.is_true(#s < 300, s)
        assert.is_truthy(s:find("...", 1, true), s)
    end)

    it("runs a config file: a non-string error says what was raised", function()
        local path = os.tmpname()
        local f = assert(io.open(path, "w"))
        f:write("moor.cfg{ node = 'n1' }\nerror({ code = 7 })\n")
        f:close()
        local env = { moor = {}, error = error }
        local ok, err = pcall(config.run, path, env, env.moor)
        os.remove(path)
        assert.is_false(ok)
        assert.are.equal("config error: the config raised a table: {code = 7}", err)
    end)

    it("runs a config file and points errors at its line", function()
        local path = os.tmpname()
        local f = assert(io.open(path, "w"))
        f:write("moor.cfg{ node = 'n1' }\n\nmoor.space('s', { w = 'most' })\n")
        f:close()
        local env = { moor = {} }
        local ok, err = pcall(config.run, path, env, env.moor)
        os.remove(path)
        assert.is_false(ok)
        assert.matches(":3: moor.space%('s'%): w must be an integer in 1..16 or one of one, quorum, all", err)
    end)
end)
