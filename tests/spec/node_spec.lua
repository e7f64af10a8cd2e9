-- Specs for the Lua layer through a real node: moord started from a
-- temporary config, driven over TCP by moor.client (LuaSocket).
--
-- What is covered: handlers that yield (several moor.put/get/del in one
-- call; 20 calls pipelined so that many handlers are in flight), budgets
-- (an endless loop answers HANDLER_TIMEOUT and the node serves on; per-
-- handler overrides of instructions and timeout_ms), HANDLER_ERROR with the
-- message, NO_HANDLER, the sandbox (every escape errors or yields nil, never
-- success), the incr and cas plugins, and the codec: every MessagePack type
-- through an echo handler and back.
--
-- Needs env MOOR_BUILD (the build directory holding moord) and LuaSocket;
-- without them every test here is reported as pending with the reason.
-- MOOR_ROOT (the repository: lua/ and plugins/) reaches moord through the
-- environment when set.  The node is started by moor.testing (the kit users get): a fresh
-- scratch directory, a free port, every wait bounded; teardown
-- (T.stop_all) stops it and removes the directory, and its watchdog kills
-- it should busted itself die, so no moord outlives the run.

local mp = require("moor.msgpack")
local client = require("moor.client")

local socket_ok, socket = pcall(require, "socket")

local build = os.getenv("MOOR_BUILD")
local moord = build and build ~= "" and (build .. "/moord") or nil

local function file_exists(path)
    local f = io.open(path, "rb")
    if f then
        f:close()
        return true
    end
    return false
end

local why_not
if not moord then
    why_not = "MOOR_BUILD is not set (set it to the build directory holding moord)"
elseif not file_exists(moord) then
    why_not = moord .. " does not exist (build it: cmake --build " .. build .. ")"
elseif not socket_ok then
    why_not = "LuaSocket is not installed (apt-get install lua-socket)"
end

if why_not then
    describe("moord through moor.client", function()
        pending("node specs skipped: " .. why_not)
    end)
    return
end

local T = require("moor.testing")

-- The node's config: handlers for every spec below ------------------------------

local HANDLERS = [==[
-- echo(v) -> v: the codec both ways
moor.handle("echo", function(v) return v end)
moor.handle("nargs", function(...) return select("#", ...) end)

local function must(v, err)
  if err ~= nil then error(err, 0) end
  return v
end

-- several kv calls in sequence, each yielding, composed into one answer
moor.handle("compose", function(prefix)
  local a, b = prefix .. ":a", prefix .. ":b"
  must(moor.put(a, 1))
  must(moor.put(b, { x = 2, list = { "p", "q" } }))
  local ra = must(moor.get(a))
  local rb = must(moor.get(b))
  must(moor.put(a, ra.values[1] + 40, { ctx = ra.ctx }))
  local ra2 = must(moor.get(a))
  must(moor.del(b, { ctx = rb.ctx }))
  local gone = must(moor.get(b))
  return { a = ra2.values[1], a_siblings = #ra2.values, b = rb.values[1],
           b_gone = gone == nil }
end)

-- pipelined: put i, read it back, write i * 10 over it, read again.
-- started/finished are upvalues both handlers share (each handler's
-- globals are its own): peak is the most calls that were between their
-- start and their end at once.
local started, finished, peak = 0, 0, 0
moor.handle("chain", function(prefix, i)
  started = started + 1
  if started - finished > peak then peak = started - finished end
  local k = prefix .. ":" .. i
  local ok, err = pcall(function()
    must(moor.put(k, i))
    local r = must(moor.get(k))
    must(moor.put(k, r.values[1] * 10, { ctx = r.ctx }))
    return must(moor.get(k))
  end)
  finished = finished + 1
  if not ok then error(err, 0) end
  return { i = i, v = err.values[1], n = #err.values }
end)
moor.handle("peak", function() local p = peak; peak = 0; return p end)

-- budgets
local function count(n) local s = 0; for _ = 1, n do s = s + 1 end; return s end
moor.handle("spin", function() while true do end end)
moor.handle("spin_pcall", function()
  local ok, e = pcall(function() while true do end end)
  return "swallowed: " .. tostring(ok) .. " " .. tostring(e)
end)
moor.handle("count", count)
moor.handle("count_tight", count, { instructions = 100000 })
moor.handle("count_big", count, { instructions = 1000000000, timeout_ms = 10000 })
moor.handle("spin_short", function() while true do end end,
            { instructions = 1000000000000, timeout_ms = 150 })

-- errors
moor.handle("fail", function(msg) error("boom: " .. tostring(msg), 0) end)
moor.handle("write_then_fail", function(k)
  must(moor.put(k, "written"))
  error("after one write", 0)
end)

-- sandbox escapes: each returns "ESCAPED ..." only if the forbidden thing worked
moor.handle("esc_io_open", function()
  local f = io.open("/etc/passwd", "r")
  return "ESCAPED io.open: " .. tostring(f and f:read("*l"))
end)
moor.handle("esc_os_execute", function()
  return "ESCAPED os.execute: " .. tostring(os.execute("true"))
end)
moor.handle("esc_require_ffi", function()
  local ffi = require("ffi")
  return "ESCAPED ffi: " .. tostring(ffi and ffi.C)
end)
moor.handle("esc_require_socket", function()
  local s = require("socket")
  return "ESCAPED socket: " .. tostring(s and s.tcp)
end)
moor.handle("esc_require_jit", function()
  return "ESCAPED jit: " .. tostring(require("jit"))
end)
moor.handle("esc_string_dump", function()
  local f = load(string.dump(function() return 1 end))
  return "ESCAPED string.dump: " .. tostring(f)
end)
moor.handle("esc_method_dump", function()
  return "ESCAPED (''):dump: " .. tostring((""):dump())
end)
moor.handle("esc_load_bytecode", function(code)
  local f = load(code)           -- code is bytecode made by the client
  if f then return "ESCAPED bytecode ran: " .. tostring(f()) end
  return nil
end)
moor.handle("esc_loadfile", function()
  return "ESCAPED loadfile: " .. tostring(loadfile("/etc/passwd"))
end)
moor.handle("esc_dofile", function()
  return "ESCAPED dofile: " .. tostring(dofile("/etc/passwd"))
end)
moor.handle("esc_debug_getinfo", function()
  return "ESCAPED debug.getinfo: " .. tostring(debug.getinfo(1).source)
end)
moor.handle("esc_jit_on", function()
  jit.on()
  return "ESCAPED jit.on"
end)
moor.handle("esc_getfenv", function()
  local g = getfenv(0)
  return "ESCAPED getfenv: io = " .. tostring(g.io)
end)
moor.handle("esc_setfenv", function()
  setfenv(1, {})
  return "ESCAPED setfenv"
end)
moor.handle("esc_load_env", function()
  local f = load("return io")    -- a text chunk gets the sandbox table
  local io_ = f and f()
  if io_ then return "ESCAPED load env: " .. tostring(io_) end
  return nil
end)
moor.handle("esc_string_mt", function()
  local mt = getmetatable("")
  if type(mt) == "table" and mt.__index ~= string then
    return "ESCAPED string metatable reaches the real string library"
  end
  return nil
end)
-- hardening: the heap cap, budgets inside C calls, isolation, result size,
-- log lines
moor.handle("rep_huge", function() return #string.rep("x", 2^30) end)
moor.handle("catastrophic", function() return string.rep("a", 400):find(".-.-.-b") end)
moor.handle("evil_put", function() moor.put = function() return { ctx = "" } end end)
moor.handle("evil_tostring", function()
  _G.tostring = function() return "pwned" end
  return "done"
end)
moor.handle("show", function(x) return tostring(x) end)
moor.handle("remember", function(v) remembered = v; return remembered end)
moor.handle("recall", function() return remembered end)
moor.handle("big_result", function(n) return string.rep("v", n) end)
moor.handle("log_forge", function()
  moor.log("warn", "spec-forge\n2099-01-01T00:00:00.000Z ERROR [spec] forged line")
  return true
end)
-- every dangerous name this environment can see, for the report
moor.handle("reachable", function()
  local found = {}
  for _, n in ipairs({ "io", "ffi", "jit", "debug", "package", "loadfile", "dofile",
                       "loadstring", "getfenv", "setfenv", "collectgarbage", "newproxy",
                       "module", "coroutine" }) do
    if _G[n] ~= nil then found[#found + 1] = n end
  end
  for k in pairs(os) do
    if k ~= "time" and k ~= "clock" and k ~= "date" then found[#found + 1] = "os." .. k end
  end
  if string.dump ~= nil then found[#found + 1] = "string.dump" end
  if getmetatable("") ~= false then found[#found + 1] = "string metatable" end
  return moor.array(found)
end)
]==]

-- moor.testing gives the node its listen address and data_dir (moor.arg)
-- and keeps its output (the log) in its scratch directory.
local CONFIG = [[
-- written by tests/spec/node_spec.lua
moor.cfg{
  node = "spec",
  listen = moor.arg.listen,
  data_dir = moor.arg.data_dir,
  engine = { sync = "none", memtable_mb = 4, cache_mb = 4 },
  log = { level = "info" },
  handler = { instructions = 10000000, timeout_ms = 3000, memory_mb = 64 },
  limits = { value_max_mb = 1 },
  plugins = { "handlers.incr", "handlers.cas" },
}
]] .. HANDLERS

local node -- moor.testing's node, between setup and teardown

local function log_tail()
    local s = node:output()
    if #s > 2000 then
        s = "..." .. s:sub(-2000)
    end
    return s
end

-- Comparing decoded values ----------------------------------------------------------

local function array_len(t)
    local mt = getmetatable(t)
    local n = type(mt) == "table" and rawget(mt, "msgpack.array")
    return n or #t
end

local function is_sequence(t)
    if mp.is_map(t) then
        return false
    end
    local n = array_len(t)
    for k in pairs(t) do
        if type(k) ~= "number" or k < 1 or k > n or k ~= math.floor(k) then
            return false
        end
    end
    return true
end

local show_table

local function show(v)
    if type(v) == "string" then
        if #v > 80 then
            return string.format("%q", v:sub(1, 80)) .. "... (" .. #v .. " bytes)"
        end
        return string.format("%q", v)
    elseif type(v) == "table" then
        return show_table(v, 0)
    end
    return type(v) .. " " .. tostring(v)
end

-- {a = 1, [1] = "x", ...}, nesting and length bounded, for messages.
show_table = function(t, depth)
    if depth > 3 then
        return "{...}"
    end
    if mp.is_bin(t) then
        return "bin(" .. show(t[1]) .. ")"
    end
    local parts = {}
    for k, v in pairs(t) do
        if #parts == 12 then
            parts[#parts + 1] = "..."
            break
        end
        local val = type(v) == "table" and show_table(v, depth + 1) or show(v)
        parts[#parts + 1] = "[" .. show(k) .. "] = " .. val
    end
    return (mp.is_map(t) and "map" or "") .. "{" .. table.concat(parts, ", ") .. "}"
end

-- nil when got matches want, else the path and both values.
local function diff(want, got, path)
    path = path or "value"
    if mp.is_bin(want) then
        want = want[1] -- bin and str both decode to strings
    end
    if mp.is_ext(want) then
        if not (mp.is_ext(got) and got.ext == want.ext and got.data == want.data) then
            return path .. ": want ext " .. show(want) .. ", got " .. show(got)
        end
        return nil
    end
    local tw, tg = type(want), type(got)
    if tw == "cdata" or tg == "cdata" then
        if tw == "string" or tg == "string" or tw == "table" or tg == "table" or want ~= got then
            return path .. ": want " .. show(want) .. ", got " .. show(got)
        end
        return nil
    end
    if tw ~= tg then
        return path .. ": want " .. show(want) .. ", got " .. show(got)
    end
    if tw == "number" then
        if want ~= want then
            if got == got then
                return path .. ": want NaN, got " .. show(got)
            end
            return nil
        end
        if want ~= got or (want == 0 and 1 / want ~= 1 / got) then
            return path .. ": want " .. string.format("%.17g", want) .. ", got "
                .. string.format("%.17g", got)
        end
        return nil
    end
    if tw ~= "table" then
        if want ~= got then
            return path .. ": want " .. show(want) .. ", got " .. show(got)
        end
        return nil
    end
    local sw, sg = is_sequence(want), is_sequence(got)
    if sw ~= sg then
        return path .. ": want " .. (sw and "an array" or "a map") .. ", got "
            .. (sg and "an array" or "a map") .. " " .. show(got)
    end
    if sw then
        local nw, ng = array_len(want), array_len(got)
        if nw ~= ng then
            return path .. ": want an array of " .. nw .. ", got one of " .. ng .. " " .. show(got)
        end
        for i = 1, nw do
            local d = diff(want[i], got[i], path .. "[" .. i .. "]")
            if d then
                return d
            end
        end
        return nil
    end
    for k, v in pairs(want) do
        local d = diff(v, got[k], path .. "." .. tostring(k))
        if d then
            return d
        end
    end
    for k, v in pairs(got) do
        if want[k] == nil then
            return path .. ": unexpected key " .. show(k) .. " = " .. show(v)
        end
    end
    return nil
end

local function assert_same(want, got, what)
    local d = diff(want, got)
    assert(d == nil, (what and (what .. ": ") or "") .. tostring(d))
end

-- The specs ---------------------------------------------------------------------------

describe("moord through moor.client", function()
    local c
    local prefix = "node_spec:" .. tostring(os.time()) .. ":"

    setup(function()
        node = T.node{ config = CONFIG, moord = moord }
    end)

    teardown(T.stop_all)

    before_each(function()
        local err
        c, err = client.connect(node.addr, { timeout = 5 })
        assert(c, err)
    end)

    after_each(function()
        if c then
            c:close()
            c = nil
        end
    end)

    -- ok when err says HANDLER_ERROR or the call gave nil; never a value
    local function assert_refused(name, ...)
        local res, err = c:call(name, ...)
        assert(res == nil, name .. " succeeded: " .. show(res))
        assert(err == nil or err:match("^HANDLER_ERROR: "),
            name .. ": want HANDLER_ERROR or nil, got error " .. tostring(err))
        assert.is_true(c:ping() ~= nil, "the node stopped answering after " .. name)
        return err
    end

    describe("where and receipts (a node alone)", function()
        it("where names the node itself as the one replica, no fallbacks", function()
            local me = c:ping().node
            local w = assert(c:where(prefix .. "w"))
            assert.are.same({ me }, w.replicas)
            assert.are.same({}, w.fallbacks)
            local res, err = c:where(prefix .. "w", { space = "nospace" })
            assert.is_nil(res)
            assert.truthy(err:match("^BAD_REQUEST"), err)
        end)
        it("get/put/del with receipt = true answer one entry, this node", function()
            local me, k = c:ping().node, prefix .. "r"
            local p = assert(c:put(k, "v", { receipt = true }))
            assert.truthy(p.ctx)
            assert.are.same({ { node = me, status = "ok" } }, p.receipt)
            local g = assert(c:get(k, { receipt = true }))
            assert.are.same({ "v" }, g.values)
            assert.are.same({ { node = me, status = "found" } }, g.receipt)
            local none = assert(c:get(k .. "-none", { receipt = true }))
            assert.are.same({}, none.values)
            assert.are.same({ { node = me, status = "notfound" } }, none.receipt)
            local d = assert(c:del(k, { ctx = g.ctx, receipt = true }))
            assert.are.same({ { node = me, status = "ok" } }, d.receipt)
        end)
    end)

    describe("handlers that yield", function()
        it("compose several moor.put/get/del in one call", function()
            local res, err = c:call("compose", prefix .. "compose")
            assert.is_nil(err)
            assert_same({ a = 41, a_siblings = 1, b = { x = 2, list = { "p", "q" } }, b_gone = true },
                res)
            -- and the writes are there for a plain client read
            local ra = assert(c:get(prefix .. "compose:a"))
            assert_same({ 41 }, ra.values)
            assert.is_nil((c:get(prefix .. "compose:b")))
        end)

        it("answer 20 pipelined calls, each correctly", function()
            assert.are.equal(0, (c:call("peak"))) -- reset: nothing ran before
            local want = {}
            for i = 1, 20 do
                local id = assert(c:send("call", "chain", prefix .. "chain", i))
                want[id] = i
            end
            local seen = 0
            for _ = 1, 20 do
                local id, res, err = c:recv()
                assert(id ~= nil, "recv: " .. tostring(err))
                assert(want[id] ~= nil, "answer for unknown msgid " .. tostring(id))
                assert(err == nil, "call " .. want[id] .. ": " .. tostring(err))
                local i = want[id]
                assert_same({ i = i, v = i * 10, n = 1 }, res, "call " .. i)
                want[id] = nil
                seen = seen + 1
            end
            assert.are.equal(20, seen)
            assert.are.equal(0, c:inflight())
            -- the requests arrived together, and each handler yields on
            -- its first put: many handlers were in flight at once
            local peak = assert(c:call("peak"))
            assert.is_true(peak >= 2, "at most " .. tostring(peak) .. " handler(s) in flight at once")
        end)
    end)

    describe("budgets", function()
        it("stop an endless loop with HANDLER_TIMEOUT; the node serves on", function()
            local res, err = c:call("spin")
            assert.is_nil(res)
            assert.is_truthy(err and err:match("^HANDLER_TIMEOUT: "), tostring(err))
            assert.is_truthy(err:find("spin", 1, true), err)
            assert.is_not_nil((c:ping()))
            assert.are.equal(7, (c:call("echo", 7)))
            local r = assert(c:call("compose", prefix .. "after_spin"))
            assert.are.equal(41, r.a)
        end)

        it("cannot be swallowed by pcall inside the handler", function()
            local res, err = c:call("spin_pcall")
            assert.is_nil(res)
            assert.is_truthy(err and err:match("^HANDLER_TIMEOUT: "), tostring(err))
            assert.is_not_nil((c:ping()))
        end)

        it("default instruction budget: a small loop runs, a large one is stopped", function()
            assert.are.equal(200000, (c:call("count", 200000)))
            local res, err = c:call("count", 10000000)
            assert.is_nil(res)
            assert.is_truthy(err and err:match("^HANDLER_TIMEOUT: "), tostring(err))
            assert.is_truthy(err:find("10000000 instructions", 1, true), err)
        end)

        it("per-handler instructions override applies (tighter and looser)", function()
            local res, err = c:call("count_tight", 200000)
            assert.is_nil(res)
            assert.is_truthy(err and err:match("^HANDLER_TIMEOUT: "), tostring(err))
            assert.is_truthy(err:find("100000 instructions", 1, true), err)
            -- the same loop over the default budget runs under a larger one
            local n, err2 = c:call("count_big", 10000000)
            assert.is_nil(err2)
            assert.are.equal(10000000, n)
        end)

        it("per-handler timeout_ms override applies", function()
            local res, err = c:call("spin_short")
            assert.is_nil(res)
            assert.is_truthy(err and err:match("^HANDLER_TIMEOUT: "), tostring(err))
            assert.is_truthy(err:find("time budget of 150 ms", 1, true), err)
            assert.is_not_nil((c:ping()))
        end)
    end)

    describe("errors", function()
        it("a Lua error answers HANDLER_ERROR with its message", function()
            local res, err = c:call("fail", "xyzzy")
            assert.is_nil(res)
            assert.is_truthy(err and err:match("^HANDLER_ERROR: "), tostring(err))
            assert.is_truthy(err:find("boom: xyzzy", 1, true), err)
            assert.are.equal("ok", (c:call("echo", "ok")))
        end)

        it("says how many writes completed before the error, and keeps them", function()
            local k = prefix .. "half"
            local res, err = c:call("write_then_fail", k)
            assert.is_nil(res)
            assert.is_truthy(err and err:match("^HANDLER_ERROR: "), tostring(err))
            assert.is_truthy(err:find("after one write", 1, true), err)
            assert.is_truthy(err:find("1 write", 1, true), err)
            local r = assert(c:get(k))
            assert_same({ "written" }, r.values)
        end)

        it("an unknown handler answers NO_HANDLER", function()
            local res, err = c:call("no_such_handler", 1, 2)
            assert.is_nil(res)
            assert.is_truthy(err and err:match("^NO_HANDLER: "), tostring(err))
        end)
    end)

    describe("sandbox", function()
        it("refuses io.open('/etc/passwd')", function()
            assert_refused("esc_io_open")
        end)
        it("refuses os.execute", function()
            assert_refused("esc_os_execute")
        end)
        it("refuses require('ffi')", function()
            assert_refused("esc_require_ffi")
        end)
        it("refuses require('socket'), a C module", function()
            assert_refused("esc_require_socket")
        end)
        it("refuses require('jit')", function()
            assert_refused("esc_require_jit")
        end)
        it("has no string.dump, nor ('').dump through the string metatable", function()
            assert_refused("esc_string_dump")
            assert_refused("esc_method_dump")
        end)
        it("refuses to load bytecode sent by a client", function()
            local code = string.dump(function() return "from bytecode" end)
            assert_refused("esc_load_bytecode", mp.bin(code))
        end)
        it("has no loadfile or dofile", function()
            assert_refused("esc_loadfile")
            assert_refused("esc_dofile")
        end)
        it("has no debug (debug.getinfo)", function()
            assert_refused("esc_debug_getinfo")
        end)
        it("has no jit (jit.on)", function()
            assert_refused("esc_jit_on")
        end)
        it("has no getfenv/setfenv to reach the real _G", function()
            assert_refused("esc_getfenv")
            assert_refused("esc_setfenv")
        end)
        it("gives text chunks from load the sandbox, not the real _G", function()
            assert_refused("esc_load_env")
        end)
        it("hides the string metatable", function()
            assert_refused("esc_string_mt")
        end)
        it("exposes none of the dangerous names at all", function()
            local found, err = c:call("reachable")
            assert.is_nil(err)
            assert_same({}, found, "reachable in the sandbox")
        end)
    end)

    describe("hardening", function()
        local function timed_call(...)
            local t0 = socket.gettime()
            local res, err = c:call(...)
            print(string.format("  %s: %s (%.0f ms)", (...), tostring(err or "ok"),
                                (socket.gettime() - t0) * 1000))
            return res, err
        end

        it("refuses an allocation past handler.memory_mb and serves on", function()
            local res, err = timed_call("rep_huge")
            assert.is_nil(res)
            assert.is_truthy(err and err:match("^HANDLER_ERROR: "), tostring(err))
            assert.is_truthy(err:find("handler.memory_mb", 1, true), err)
            assert.are.equal(7, (c:call("echo", 7)))
            local info = assert(c:info())
            assert.is_true(info.lua.heap_refused >= 1)
            assert.is_true(info.lua.heap_limit > 0)
            assert.is_true(info.lua.heap_bytes <= info.lua.heap_limit)
        end)

        it("stops a catastrophic pattern by its budget", function()
            local res, err = timed_call("catastrophic")
            assert.is_nil(res)
            assert.is_truthy(err and err:match("^HANDLER_TIMEOUT: "), tostring(err))
            assert.is_true(c:ping() ~= nil)
        end)

        it("keeps moor read-only: incr still stores after a call replaced moor.put", function()
            local res, err = c:call("evil_put")
            assert.is_truthy(err and err:find("cannot set moor.put: moor is read-only", 1, true),
                tostring(err))
            local key = prefix .. "hardening:incr"
            assert.are.equal(3, (c:call("incr", key, 3)))
            local got = assert(c:get(key))
            assert_same({ 3 }, got.values)
        end)

        it("gives each handler its own globals", function()
            assert.are.equal("done", (c:call("evil_tostring")))
            assert.are.equal("42", (c:call("show", 42)))
            assert.are.equal("mine", (c:call("remember", "mine")))
            assert.is_nil((c:call("recall")))
        end)

        it("refuses a result over limits.value_max with VALUE_TOO_LARGE", function()
            local res, err = timed_call("big_result", 1024 * 1024)
            assert.is_nil(res)
            assert.is_truthy(err and err:match("^VALUE_TOO_LARGE: "), tostring(err))
            assert.are.equal(1000, #assert(c:call("big_result", 1000)))
        end)

        it("writes one log line per moor.log call", function()
            assert.is_true((c:call("log_forge")))
            local log = node:output()
            assert.is_truthy(log:find("spec-forge\\n2099", 1, true), log_tail())
            assert.is_nil(log:find("\n2099-01-01T00:00:00.000Z ERROR [spec] forged", 1, true))
        end)
    end)

    describe("plugins through call", function()
        it("incr counts from a missing key and rejects a non-number", function()
            local k = prefix .. "counter"
            assert.are.equal(5, (c:call("incr", k, 5)))
            assert.are.equal(7, (c:call("incr", k, 2)))
            assert.are.equal(8, (c:call("incr", k)))
            local r = assert(c:get(k))
            assert_same({ 8 }, r.values)
            local res, err = c:call("incr", k, "lots")
            assert.is_nil(res)
            assert.is_truthy(err and err:match("^HANDLER_ERROR: "), tostring(err))
            assert.is_truthy(err:find("by must be a number", 1, true), err)
        end)

        it("cas writes only against the expected ctx", function()
            local k = prefix .. "cas"
            local first = assert(c:call("cas", k, nil, "v1"))
            assert.is_true(first.ok)
            assert.are.equal("string", type(first.ctx))
            -- "must not exist" fails now, and says what is there
            local again = assert(c:call("cas", k, nil, "other"))
            assert.is_false(again.ok)
            assert.are.equal(first.ctx, again.ctx)
            assert_same({ "v1" }, again.values)
            -- the right ctx wins
            local second = assert(c:call("cas", k, mp.bin(first.ctx), "v2"))
            assert.is_true(second.ok)
            assert.are_not.equal(first.ctx, second.ctx)
            -- a stale ctx loses and writes nothing
            local stale = assert(c:call("cas", k, mp.bin(first.ctx), "v3"))
            assert.is_false(stale.ok)
            assert_same({ "v2" }, stale.values)
            local r = assert(c:get(k))
            assert_same({ "v2" }, r.values)
            assert.are.equal(second.ctx, r.ctx)
        end)
    end)

    describe("codec through the wire", function()
        local values = {
            { "nil", nil },
            { "true", true },
            { "false", false },
            { "zero", 0 },
            { "small int", 42 },
            { "negative int", -7 },
            { "int 2^32", 2 ^ 32 },
            { "int -2^31-1", -2 ^ 31 - 1 },
            { "int 2^53", 2 ^ 53 },
            { "int -2^53", -2 ^ 53 },
            { "int 2^63-1 (int64 cdata)", 9223372036854775807LL },
            { "int -2^63 (int64 cdata)", -9223372036854775807LL - 1 },
            { "uint 2^64-1 (uint64 cdata)", 18446744073709551615ULL },
            { "float 1.5", 1.5 },
            { "float -0.1", -0.1 },
            { "float 2^60", 2 ^ 60 },
            { "float 1e300", 1e300 },
            { "float -0.0", -0.0 },
            { "float inf", math.huge },
            { "float -inf", -math.huge },
            { "float NaN", 0 / 0 },
            { "str", "hello, wire" },
            { "str utf-8", "h\195\169llo \226\130\172" },
            { "str empty", "" },
            { "bin", mp.bin("\0\1\2\255\254") },
            { "bin that is valid utf-8", mp.bin("abc") },
            { "bin empty", mp.bin("") },
            { "bin 70 KiB", mp.bin(string.rep("\0\255", 35 * 1024)) },
            { "empty array", {} },
            { "empty map", mp.map({}) },
            { "array", { 1, "two", 3.5, false } },
            { "array with a nil inside", mp.array({ 1, nil, 3 }, 3) },
            { "map", { a = 1, b = "x", c = true } },
            { "map with integer keys", mp.map({ [1] = "one", [3] = "three" }) },
            { "nested", { list = { { 1, { 2, { 3 } } }, {}, mp.map({}) },
                          deep = { a = { b = { c = { d = "e" } } } },
                          mixed = { mp.map({ k = { 1, 2 } }), { x = mp.bin("\255") } } } },
            { "ext", mp.ext(5, "xy") },
        }
        for _, case in ipairs(values) do
            local name, v = case[1], case[2]
            it("echoes " .. name, function()
                local res, err = c:call("echo", v)
                assert.is_nil(err)
                assert_same(v, res, name)
            end)
        end

        it("keeps 64-bit integers exact", function()
            local r = c:call("echo", 9223372036854775807LL)
            assert.are.equal("9223372036854775807ULL", tostring(r))
            r = c:call("echo", -9223372036854775807LL - 1)
            assert.are.equal("-9223372036854775808LL", tostring(r))
            r = c:call("echo", 2 ^ 53)
            assert.are.equal("number", type(r))
            assert.are.equal(9007199254740992, r)
        end)

        it("echoes all of them at once in one array", function()
            local all, n = {}, #values
            for i, case in ipairs(values) do
                all[i] = case[2]
            end
            local v = mp.array(all, n)
            local res, err = c:call("echo", v)
            assert.is_nil(err)
            assert_same(v, res)
        end)

        it("counts nil arguments", function()
            assert.are.equal(3, (c:call("nargs", 1, nil, 3)))
            assert.are.equal(0, (c:call("nargs")))
        end)

        it("drops a nil map value sent on the wire (a Lua table cannot hold it)", function()
            -- moor.client cannot build such a map (nor can any Lua table),
            -- so the request is assembled by hand: call("echo",
            -- {"a": nil, "b": 1, "c": [nil, 2]}) on a plain LuaSocket
            local frame = "\148" .. mp.encode(0) .. mp.encode(99) .. mp.encode("call")
                .. "\146" .. mp.encode("echo")
                .. "\131" .. mp.encode("a") .. "\192" .. mp.encode("b") .. mp.encode(1)
                .. mp.encode("c") .. "\146\192\002"
            local host, port = client.parse_addr(node.addr)
            local s = assert(socket.tcp())
            s:settimeout(5)
            local ok, cerr = s:connect(host, port)
            assert(ok, cerr)
            local sent, serr = s:send(frame)
            assert(sent == #frame, serr)
            local reader = mp.reader()
            local deadline = socket.gettime() + 5
            local got
            while true do
                local okr, v = reader:next()
                assert(okr ~= nil, v)
                if okr then
                    got = v
                    break
                end
                assert(socket.gettime() < deadline, "no answer within 5 s")
                s:settimeout(math.max(0.01, deadline - socket.gettime()))
                local chunk, rerr, partial = s:receive(1)
                chunk = chunk or partial
                assert(chunk and #chunk > 0, "receive: " .. tostring(rerr))
                reader:feed(chunk)
            end
            s:close()
            assert.are.equal(1, got[1])
            assert.are.equal(99, got[2])
            assert.is_nil(got[3])
            assert_same(mp.map({ b = 1, c = mp.array({ nil, 2 }, 2) }), got[4])
        end)
    end)
end)
