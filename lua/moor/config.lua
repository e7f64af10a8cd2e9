--[[
moor.config -- the schema of a node's config file and its validation.

A config file is Lua that calls moor.cfg{...}, moor.space(name, {...}),
moor.resolver(name, fn [, check]), moor.handle(name, fn [, budget]),
moor.gossip{...} and moor.autoscale{...}.  This module checks each call as it happens (so an error
points at the offending line of the config) and the whole at the end
(a node id was given, every resolver a space names is registered), then
hands the node one normalised table.  The C host (core/lua/host.c) turns
that table into a moor_config_t; the checks that need the OS (data_dir
writable, port free) are the node's.

  local config = require("moor.config")
  local c = config.new{ require = require }   -- how plugins are loaded
  local api = c:api()                          -- cfg, space, resolver, handle, gossip
  api.cfg{ node = "n1" }
  local t = c:finish()                         -- or raises "moor.cfg: ..."
  -- or, for a whole file:  config.run(path, env, moor_table, opts) -> t

Errors are raised as strings that start with the function's name and say
what was expected: "moor.cfg: unknown key 'lisen'", "moor.cfg: engine.sync
must be one of always, interval, none, got 'sometimes'".

The normalised table holds only what the config set (C fills the rest
with its defaults): node, listen_host, listen_port, data_dir, auth_token,
engine{...}, limits{...}, log{...}, handler{...}, sandbox{...}, hints{...}, slowlog{...}, seeds,
resp_listen_host, resp_listen_port, resp_databases = {name, ...},
http_listen_host, http_listen_port,
sibling_warn, sibling_max,
spaces = { {name, n, r, w, resolver, sloppy, sibling_warn, sibling_max}, ... }, resolvers = {name = fn},
resolver_checks = {name = {values, laws, runs} or {plugin = "resolvers.x"}} (how
lua/moor/laws.lua checks each resolver),
handlers = {name = {fn, instructions, timeout_ms}}, gossip{...},
autoscale = {check_s, cooldown_s, add, remove} (its policy is kept among the
resolvers as M.AUTOSCALE_POLICY, a name no moor.resolver can take).

Pure Lua without C: busted runs it directly.
]]

local type, pairs, ipairs, tostring, error, pcall, select, getmetatable, rawget =
    type, pairs, ipairs, tostring, error, pcall, select, getmetatable, rawget
local format, concat, sort, floor = string.format, table.concat, table.sort, math.floor

local M = {}

M.MAX_SPACES = 64
-- Replicas of a key at most (n, r, w): MOOR_COORD_N_MAX in
-- core/cluster/coord.h, the one maximum; lua_test_host pins the two equal.
M.N_MAX = 16
M.SIBLINGS_MAX = 512 -- MOOR_RECORD_MAX_SIBLINGS: sibling_max at most this

local function fail(fmt, ...)
    error(format(fmt, ...), 0)
end

local function show(v)
    if type(v) == "string" then
        return "'" .. v .. "'"
    end
    return tostring(v)
end

-- ---- field checkers: each returns the value or raises -----------------------

local function int(lo, hi)
    return function(where, v)
        if type(v) ~= "number" or v ~= floor(v) or v < lo or v > hi then
            fail("%s must be an integer in %d..%d, got %s", where, lo, hi, show(v))
        end
        return v
    end
end

local function num(lo, hi)
    return function(where, v)
        if type(v) ~= "number" or v ~= v or v < lo or v > hi then
            fail("%s must be a number in %s..%s, got %s", where, lo, hi, show(v))
        end
        return v
    end
end

local function str(maxlen, pattern, what)
    return function(where, v)
        if type(v) ~= "string" or #v == 0 or #v > maxlen or (pattern and not v:find(pattern)) then
            fail("%s must be %s, got %s", where,
                 what or format("a non-empty string of at most %d bytes", maxlen), show(v))
        end
        return v
    end
end

local function bool(where, v)
    if type(v) ~= "boolean" then
        fail("%s must be true or false, got %s", where, show(v))
    end
    return v
end

local function oneof(...)
    local names = { ... }
    local set = {}
    for _, n in ipairs(names) do
        set[n] = true
    end
    return function(where, v)
        if not set[v] then
            fail("%s must be one of %s, got %s", where, concat(names, ", "), show(v))
        end
        return v
    end
end

-- "a.b.c.d:port" or "[v6]:port" -> host, port; nil if malformed.
function M.split_listen(v)
    if type(v) ~= "string" then
        return nil
    end
    local host, port = v:match("^(%d+%.%d+%.%d+%.%d+):(%d+)$")
    if host then
        for part in host:gmatch("%d+") do
            if #part > 3 or tonumber(part) > 255 then
                return nil
            end
        end
    else
        host, port = v:match("^%[([%x:%.]+)%]:(%d+)$")
    end
    port = port and tonumber(port)
    if not host or #host > 63 or not port or port > 65535 or #v > 80 then
        return nil
    end
    return host, port
end

local function listen(where, v)
    if not M.split_listen(v) then
        fail("%s must be 'host:port' with an IPv4 address (or [IPv6]) and a port 0..65535, got %s",
             where, show(v))
    end
    return v
end

local function join(where, k)
    return where == "" and tostring(k) or where .. "." .. tostring(k)
end

-- A table of known keys: unknown key -> error naming it (dotted).
local function record(schema)
    return function(where, v)
        if type(v) ~= "table" then
            fail("%s must be a table, got %s", where, show(v))
        end
        local out = {}
        for k, x in pairs(v) do
            local check = schema[k]
            if not check then
                local keys = {}
                for name in pairs(schema) do
                    keys[#keys + 1] = name
                end
                sort(keys)
                fail("unknown key '%s' (expected one of: %s)", join(where, k), concat(keys, ", "))
            end
            out[k] = check(join(where, k), x)
        end
        return out
    end
end

-- Checks the table t of a config function against schema: errors start
-- with fname ("moor.cfg: ...").
local function checked(fname, schema, t)
    if type(t) ~= "table" then
        fail("%s: expects a table, got %s", fname, show(t))
    end
    local ok, v = pcall(record(schema), "", t)
    if not ok then
        fail("%s: %s", fname, v)
    end
    return v
end

local function list(check, maxn)
    return function(where, v)
        if type(v) ~= "table" then
            fail("%s must be a list, got %s", where, show(v))
        end
        local n = #v
        for k in pairs(v) do
            if type(k) ~= "number" or k < 1 or k > n or k ~= floor(k) then
                fail("%s must be a list (keys 1..n), has key %s", where, show(k))
            end
        end
        if n > maxn then
            fail("%s holds %d entries, at most %d allowed", where, n, maxn)
        end
        local out = {}
        for i = 1, n do
            out[i] = check(format("%s[%d]", where, i), v[i])
        end
        return out
    end
end

local NAME = "^[%w_%.%-]+$"
local MB = 1024 * 1024

M.schema = {
    node = str(64, NAME, "a node id: 1..64 letters, digits, '_', '.' or '-'"),
    listen = listen,
    data_dir = str(4095),
    seeds = list(listen, 64),
    resp_listen = listen,
    http_listen = listen,
    resp_databases = function(where, v)
        local names = list(str(255, nil, "a keyspace name (1..255 bytes)"), 64)(where, v)
        if #names == 0 then
            fail("%s must name at least one keyspace (index 0 is database 0)", where)
        end
        return names
    end,
    cluster_secret = function(where, v)
        if type(v) ~= "string" or #v == 0 or #v > 255 then
            fail("%s must be a string of 1..255 bytes, got %s", where, show(v))
        end
        return v
    end,
    zone = str(63, NAME, "a zone name (letters, digits, '_', '.', '-')"),
    vnodes = int(1, 4096),
    request_timeout_ms = int(1, 3600000),
    sibling_warn = int(1, M.SIBLINGS_MAX),
    sibling_max = int(1, M.SIBLINGS_MAX),
    hints = record {
        window_s = int(1, 2592000),
        max_mb = int(1, 1048576),
        rate_kb_s = int(1, 10485760),
    },
    anti_entropy = record {
        interval_s = int(0, 31536000),
        rate_kb_s = int(1, 10485760),
        build_kb_s = int(1, 10485760),
        concurrency = int(1, 64),
    },
    transfer = record {
        rate_mb_s = num(0.01, 100000),
        concurrency = int(1, 64),
        settle_ms = int(0, 600000),
        cleanup_s = int(0, 31536000),
    },
    tombstone_grace_s = int(0, 315360000),
    -- threshold_ms: requests taking at least this long are logged; 0 logs
    -- every one, -1 none (README "Slow log")
    slowlog = record {
        threshold_ms = num(-1, 3600000),
        max_len = int(1, 100000),
    },
    vclock = record {
        max_entries = int(1, 16),
        keep_min = int(1, 16),
        max_age_s = int(0, 315360000),
    },
    auth_token = function(where, v)
        if type(v) ~= "string" or #v > 255 then
            fail("%s must be a string of at most 255 bytes, got %s", where, show(v))
        end
        return v
    end,
    engine = record {
        memtable_mb = int(1, 65536),
        cache_mb = int(0, 1048576),
        sync = oneof("always", "interval", "none"),
        sync_ms = int(1, 60000),
        compression = int(0, 22),
        bloom_bits = int(0, 64),
        wal_recovery = oneof("keep", "stop"),
    },
    limits = record {
        max_frame_mb = int(1, 1024),
        key_max = int(1, 65535),
        value_max_mb = int(1, 512),
        max_conns = int(1, 1000000),
        peer_conns = int(0, 65536),
        idle_timeout_ms = int(0, 86400000),
        auth_timeout_ms = int(0, 86400000),
        frame_timeout_ms = int(0, 86400000),
        max_inflight = int(1, 1000000),
        output_soft_mb = int(1, 1048576),
        output_hard_mb = int(1, 1048576),
        output_total_mb = int(1, 1048576),
    },
    log = record {
        level = oneof("debug", "info", "warn", "error", "off"),
        file = str(4095),
    },
    handler = record {
        instructions = int(10000, 1e12),
        timeout_ms = int(1, 3600000),
        memory_mb = int(8, 65536),
    },
    sandbox = record { io = bool, os = bool, ffi = bool, debug = bool },
    plugins = list(str(128, "^%a[%w_]*%.[%a_][%w_]*$",
                       "a plugin name 'resolvers.<name>' or 'handlers.<name>'"), 256),
}

-- r and w: a count or one of the names (resolved against n per request).
local function level(where, v)
    if v == "one" or v == "quorum" or v == "all" then
        return v
    end
    if type(v) ~= "number" or v ~= floor(v) or v < 1 or v > M.N_MAX then
        fail("%s must be an integer in 1..%d or one of one, quorum, all, got %s", where, M.N_MAX,
             show(v))
    end
    return v
end

M.space_schema = {
    n = int(1, M.N_MAX),
    r = level,
    w = level,
    resolver = str(63, NAME, "a resolver name (letters, digits, '_', '.', '-')"),
    sloppy = bool,
    tombstone_grace_s = int(0, 315360000),
    sibling_warn = int(1, M.SIBLINGS_MAX),
    sibling_max = int(1, M.SIBLINGS_MAX),
}

-- moor.gossip{...}: failure detection and membership (core/cluster/gossip.h;
-- README "Configuration reference").  probe_timeout_ms < period_ms is
-- checked by the node (moor_gossip_params_check), which knows the defaults.
M.gossip_schema = {
    period_ms = int(10, 60000),
    probe_timeout_ms = int(1, 60000),
    indirect_k = int(0, 16),
    suspicion_mult = int(1, 100),
    suspicion_max_mult = int(1, 100),
    retransmit_mult = int(1, 100),
    max_local_health = int(1, 100),
    gossip_interval_ms = int(10, 60000),
    gossip_fanout = int(1, 16),
    max_piggyback = int(1, 128),
    join_interval_ms = int(10, 600000),
    sync_interval_ms = int(10, 3600000),
}

-- moor.autoscale{...}: automatic scaling (README "Automatic scaling").  The
-- policy is kept as a resolver under a name that has a ':', which no
-- resolver name may contain, wrapped so that the node gets one normalised
-- answer (lua/moor/autoscale.lua normalize).
M.AUTOSCALE_POLICY = "autoscale:policy"
M.autoscale_schema = {
    check_s = int(1, 86400),
    cooldown_s = int(0, 86400),
    add = str(1000, nil),
    remove = str(1000, nil),
}

-- moor.resolver's third argument: what `moord --check` and reloads check
-- the resolver with (lua/moor/laws.lua; README "Resolvers").
local function law_values(where, v)
    if type(v) == "function" then
        return v
    end
    return oneof("any", "number", "integer", "string", "list", "map", "counter")(where, v)
end

M.resolver_check_schema = {
    values = law_values,
    laws = list(oneof("commutative", "associative", "idempotent"), 3),
    runs = int(1, 100000),
}

local budget_schema = {
    instructions = int(10000, 1e12),
    timeout_ms = int(1, 3600000),
}

local PLUGIN_KINDS = { resolvers = true, handlers = true }

-- ---- the collector ----------------------------------------------------------

local C = {}
C.__index = C

-- opts.require: loads a plugin module by name ("resolvers.lww"); default
-- the global require.  opts.on_sandbox(t): told the sandbox opt-ins as soon
-- as moor.cfg sets them (the host widens the environment from there on).
function M.new(opts)
    opts = opts or {}
    return setmetatable({
        require = opts.require or require,
        on_sandbox = opts.on_sandbox,
        t = { spaces = {}, resolvers = {}, handlers = {}, resolver_checks = {} },
        space_index = {},
        cfg_done = false,
    }, C)
end

local function load_plugin(self, name)
    local kind, short = name:match("^([^.]+)%.(.+)$")
    if not PLUGIN_KINDS[kind] then
        fail("moor.cfg: plugin '%s' is not a resolver or a handler (use 'resolvers.%s' or 'handlers.%s')",
             name, short or name, short or name)
    end
    local ok, mod = pcall(self.require, name)
    if not ok then
        local msg = tostring(mod)
        if msg:find("module '" .. name .. "' not found", 1, true) then
            fail("moor.cfg: plugin '%s' not found (looked for plugins/%s.lua)", name,
                 (name:gsub("%.", "/")))
        end
        fail("moor.cfg: plugin '%s' failed to load: %s", name, msg)
    end
    if type(mod) ~= "function" then
        fail("moor.cfg: plugin '%s' must return a function, got %s", name, type(mod))
    end
    if kind == "resolvers" then
        self.t.resolvers[short] = mod
        self.t.resolver_checks[short] = { plugin = name }
    else
        self.t.handlers[short] = { fn = mod }
    end
end

function C:cfg(t)
    if self.cfg_done then
        fail("moor.cfg: called twice (put every setting in one moor.cfg{...})")
    end
    local v = checked("moor.cfg", M.schema, t)
    self.cfg_done = true
    local out = self.t
    for k, x in pairs(v) do
        if k == "listen" then
            out.listen_host, out.listen_port = M.split_listen(x)
        elseif k == "resp_listen" then
            out.resp_listen_host, out.resp_listen_port = M.split_listen(x)
        elseif k == "http_listen" then
            out.http_listen_host, out.http_listen_port = M.split_listen(x)
        elseif k ~= "plugins" then
            out[k] = x
        end
    end
    if v.sandbox and self.on_sandbox then
        self.on_sandbox(v.sandbox)
    end
    for _, name in ipairs(v.plugins or {}) do
        load_plugin(self, name)
    end
end

function C:space(name, t)
    str(255, nil)("moor.space: name", name)
    if t == nil then
        t = {}
    end
    local v = checked(format("moor.space('%s')", name), M.space_schema, t)
    -- Counts are checked against n here when n is given; otherwise against
    -- the node's default n (3 in a cluster, 1 alone) when the node starts.
    for _, k in ipairs({ "r", "w" }) do
        if v.n and type(v[k]) == "number" and v[k] > v.n then
            fail("moor.space('%s'): r and w must not exceed n (n=%d, %s=%d)", name, v.n, k, v[k])
        end
    end
    if v.sibling_warn and v.sibling_max and v.sibling_warn > v.sibling_max then
        fail("moor.space('%s'): sibling_warn (%d) must not exceed sibling_max (%d)", name,
             v.sibling_warn, v.sibling_max)
    end
    local entry = { name = name, n = v.n, r = v.r, w = v.w, resolver = v.resolver,
                    sloppy = v.sloppy, tombstone_grace_s = v.tombstone_grace_s,
                    sibling_warn = v.sibling_warn, sibling_max = v.sibling_max }
    local i = self.space_index[name]
    if not i then
        if #self.t.spaces >= M.MAX_SPACES then
            fail("moor.space: at most %d spaces", M.MAX_SPACES)
        end
        i = #self.t.spaces + 1
        self.space_index[name] = i
    end
    self.t.spaces[i] = entry
end

function C:resolver(name, fn, check)
    str(63, NAME, "a resolver name (letters, digits, '_', '.', '-')")("moor.resolver: name", name)
    if type(fn) ~= "function" then
        fail("moor.resolver('%s'): expects a function(siblings) -> value, got %s", name, type(fn))
    end
    local c = check ~= nil and checked(format("moor.resolver('%s')", name), M.resolver_check_schema,
                                       check) or {}
    self.t.resolvers[name] = fn
    self.t.resolver_checks[name] = c
end

function C:handle(name, fn, budget)
    str(255, nil)("moor.handle: name", name)
    if type(fn) ~= "function" then
        fail("moor.handle('%s'): expects a function, got %s", name, type(fn))
    end
    local b = budget ~= nil and checked(format("moor.handle('%s')", name), budget_schema, budget)
        or {}
    self.t.handlers[name] = { fn = fn, instructions = b.instructions, timeout_ms = b.timeout_ms }
end

function C:gossip(t)
    self.t.gossip = checked("moor.gossip", M.gossip_schema, t)
end

function C:autoscale(t)
    if type(t) ~= "table" then
        fail("moor.autoscale: expects a table {check_s =, policy =, add =, remove =, cooldown_s =}, got %s",
             show(t))
    end
    local policy = t.policy
    if type(policy) ~= "function" then
        fail("moor.autoscale: policy must be a function(cluster) -> decision, got %s", show(policy))
    end
    local rest = {}
    for k, v in pairs(t) do
        if k ~= "policy" then
            rest[k] = v
        end
    end
    local v = checked("moor.autoscale", M.autoscale_schema, rest)
    if not v.add and not v.remove then
        fail("moor.autoscale: give add = \"command\" or remove = \"command\" (or both)")
    end
    v.check_s = v.check_s or 10
    v.cooldown_s = v.cooldown_s or 60
    self.t.autoscale = v
    local normalize = self.require("moor.autoscale").normalize
    self.t.resolvers[M.AUTOSCALE_POLICY] = function(cluster)
        return normalize(policy(cluster))
    end
end

-- The whole-config checks; returns the normalised table.
function C:finish()
    local t = self.t
    if not t.node then
        fail("moor.cfg: node is required (a node id such as node = \"n1\")%s",
             self.cfg_done and "" or "; the config never called moor.cfg{...}")
    end
    for _, s in ipairs(t.spaces) do
        if s.resolver and not t.resolvers[s.resolver] then
            fail("moor.space('%s'): resolver '%s' is not registered (moor.resolver('%s', fn) or plugins = {'resolvers.%s'})",
                 s.name, s.resolver, s.resolver, s.resolver)
        end
    end
    return t
end

-- The config functions as the config file calls them: errors point at the
-- caller's line.
function C:api()
    local api = {}
    for _, name in ipairs { "cfg", "space", "resolver", "handle", "gossip", "autoscale" } do
        local method = self[name]
        api[name] = function(...)
            local ok, err = pcall(method, self, ...)
            if not ok then
                error(err, 2)
            end
        end
    end
    return api
end

-- What a config raised, as text for the operator: a string as it is;
-- anything else says what it was, e.g.
--   error(nil)   -> "config error: the config raised nil instead of a message"
--   error(42)    -> "config error: the config raised a number: 42"
--   error({})    -> "config error: the config raised a table: {}"
--   error({code = 7, why = "x"}) -> "... a table: {code = 7, why = \"x\"}"
--   error(setmetatable({}, {__tostring = f})) -> "... a table: " .. f(t)
--   error(true)  -> "config error: the config raised a boolean: true"
--   error(print) -> "config error: the config raised a function"
-- A table's fields are listed sorted, strings quoted, nested tables and
-- functions by type, cut after 8 fields or 200 bytes.
local MAX_SHOWN_FIELDS, MAX_SHOWN = 8, 200

local function short(v)
    if type(v) == "string" then
        return (format("%q", #v > 40 and v:sub(1, 40) .. "..." or v):gsub("\\\n", "\\n"))
    elseif type(v) == "number" or type(v) == "boolean" then
        return tostring(v)
    end
    return type(v)
end

local function show_table(t)
    local mt = getmetatable(t)
    if type(mt) == "table" and rawget(mt, "__tostring") then
        local ok, s = pcall(tostring, t)
        if ok and type(s) == "string" then
            return s
        end
        return "(its __tostring failed: " .. tostring(s) .. ")"
    end
    local keys = {}
    for k in pairs(t) do
        keys[#keys + 1] = k
    end
    sort(keys, function(a, b)
        if type(a) ~= type(b) then
            return type(a) < type(b)
        end
        if type(a) == "number" or type(a) == "string" then
            return a < b
        end
        return tostring(a) < tostring(b)
    end)
    local parts = {}
    for i, k in ipairs(keys) do
        if i > MAX_SHOWN_FIELDS then
            parts[#parts + 1] = "..."
            break
        end
        local name = type(k) == "string" and k:match("^[%a_][%w_]*$") and k
            or "[" .. short(k) .. "]"
        parts[#parts + 1] = name .. " = " .. short(t[k])
    end
    local s = "{" .. concat(parts, ", ") .. "}"
    if #s > MAX_SHOWN then
        s = s:sub(1, MAX_SHOWN) .. "...}"
    end
    return s
end

function M.describe_error(e)
    local t = type(e)
    if t == "string" then
        return e
    elseif t == "nil" then
        return "config error: the config raised nil instead of a message"
    elseif t == "number" or t == "boolean" then
        return "config error: the config raised a " .. t .. ": " .. tostring(e)
    elseif t == "table" then
        return "config error: the config raised a table: " .. show_table(e)
    end
    return "config error: the config raised a " .. t
end

-- Runs the config file at path in env with moor (a table, usually
-- env.moor) holding the config functions; returns the normalised table or
-- raises a string (M.describe_error says what a non-string error was).
-- opts as for new().  Text chunks only.
function M.run(path, env, moor, opts)
    local c = M.new(opts)
    for k, f in pairs(c:api()) do
        moor[k] = f
    end
    local chunk, err = loadfile(path, "t", env)
    if not chunk then
        error(err, 0)
    end
    local ok, raised = pcall(chunk)
    if not ok then
        error(M.describe_error(raised), 0)
    end
    return c:finish()
end

return M
