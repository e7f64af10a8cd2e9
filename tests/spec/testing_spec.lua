-- Specs for lua/moor/testing.lua (moor.testing, the kit users test their
-- Lua with): nodes from config text and files, moor.arg, handler calls,
-- siblings written on purpose, restarts, law checks here and through
-- moord --check, the errors a user sees for a config the kit cannot use,
-- cleanup (stop_all removes every scratch directory) and the watchdog
-- that kills a node whose test process died.
--
-- Needs moord (env MOOR_BUILD or MOOR_MOORD, as ctest's lua_specs sets)
-- and LuaSocket; without them every test here is pending.  teardown stops
-- everything the kit started; every wait is bounded.

local socket_ok, socket = pcall(require, "socket")

local function exists(path)
    local f = io.open(path, "rb")
    if f then
        f:close()
        return true
    end
    return false
end

local build = os.getenv("MOOR_BUILD")
local moord = os.getenv("MOOR_MOORD") or (build and build ~= "" and build .. "/moord") or nil
local why_not
if not moord or not exists(moord) then
    why_not = "no moord (set MOOR_BUILD to the build directory, or MOOR_MOORD)"
elseif not socket_ok then
    why_not = "LuaSocket is not installed (apt-get install lua-socket)"
end
if why_not then
    describe("moor.testing", function()
        pending("skipped: " .. why_not)
    end)
    return
end

local T = require("moor.testing")

-- A config that takes what the kit gives it from moor.arg.
local HEAD = [[
local seeds = {}
for s in (moor.arg.seeds or ""):gmatch("[^,]+") do seeds[#seeds + 1] = s end
moor.cfg{ node = moor.arg.node, listen = moor.arg.listen, data_dir = moor.arg.data_dir,
          seeds = moor.arg.seeds and seeds or nil, cluster_secret = moor.arg.cluster_secret,
          plugins = { "resolvers.lww" } }
]]

local CONFIG = HEAD .. [[
moor.handle("hello", function(who) return (moor.arg.greeting or "hello") .. ", " .. who end)
moor.handle("boom", function() error("kaboom", 0) end)
moor.resolver("first", function(siblings) return siblings[1].value end)
moor.resolver("longest", function(siblings)
  local best
  for _, s in ipairs(siblings) do
    if not s.tombstone and (best == nil or #s.value > #best
        or (#s.value == #best and s.value > best)) then best = s.value end
  end
  return best
end, { values = "string" })
moor.space("names", { resolver = "longest" })
moor.space("recent", { resolver = "lww" })
]]

local function sh(cmd)
    local r = os.execute(cmd)
    return r == 0 or r == true
end

local function alive(pid)
    return exists("/proc/" .. pid .. "/stat") and not io.open("/proc/" .. pid .. "/stat"):read("*a"):find("%) Z")
end

local function wait_gone(pid, seconds)
    local deadline = socket.gettime() + seconds
    while alive(pid) do
        if socket.gettime() > deadline then
            return false
        end
        socket.sleep(0.1)
    end
    return true
end

describe("moor.testing nodes", function()
    local node
    setup(function()
        node = T.node{ config = CONFIG, set = { greeting = "hi" } }
    end)
    teardown(T.stop_all)

    it("starts a node in a scratch directory on its own port", function()
        assert.truthy(node.addr:match("^127%.0%.0%.1:%d+$"), node.addr)
        assert.truthy(exists(node.dir .. "/config.lua"))
        assert.truthy(node:output():find("listening on " .. node.addr, 1, true), node:output())
        assert.truthy(node:running())
    end)

    it("calls handlers, with moor.arg values from set", function()
        assert.equal("hi, ann", node:call("hello", "ann"))
        local res, err = node:call("boom")
        assert.is_nil(res)
        assert.truthy(err:find("^HANDLER_ERROR: .*kaboom"), err)
    end)

    it("gets, puts and deletes, and hands out clients", function()
        assert.truthy(node:put("k", { 1, 2 }))
        local r = node:get("k")
        assert.same({ { 1, 2 } }, r.values)
        assert.truthy(node:del("k", { ctx = r.ctx }))
        assert.is_nil(node:get("k"))
        local c = node:client()
        assert.truthy(c:ping())
    end)

    it("writes siblings on purpose", function()
        local r = T.siblings(node, nil, "s", { "a", "b", "c" })
        table.sort(r.values)
        assert.same({ "a", "b", "c" }, r.values)
        -- with a resolver, the get answers the merge
        assert.same({ "ccc" }, T.siblings(node, "names", "n", { "a", "ccc", "bb" }).values)
        local lww = T.siblings(node, "recent", "r", { "x", "y" })
        assert.equal(1, #lww.values)
    end)

    it("restarts on the same address with its data", function()
        local addr, pid = node.addr, node.pid
        assert.truthy(node:put("kept", 7))
        node:restart()
        assert.equal(addr, node.addr)
        assert.are_not.equal(pid, node.pid)
        assert.same({ 7 }, node:get("kept").values)
    end)

    it("checks a resolver's laws and fails readably", function()
        local report = T.laws(function(siblings)
            local best
            for _, s in ipairs(siblings) do
                if not s.tombstone and (best == nil or s.value > best) then best = s.value end
            end
            return best
        end, { values = "number" })
        assert.equal(200, report.runs)
        local ok, err = pcall(T.laws, function(siblings) return siblings[1].value end)
        assert.is_false(ok)
        assert.truthy(err:find("resolver laws broken:\nnot commutative: siblings {{", 1, true), err)
        T.laws("lww")
        T.laws("set_union")
        assert.has_error(function() T.laws("no_such_plugin") end)
    end)

    it("checks a config's resolver here and through moord --check", function()
        T.laws("longest", { config = CONFIG })
        local ok, err = pcall(T.laws, "first", { config = CONFIG })
        assert.is_false(ok)
        assert.truthy(err:find("not commutative", 1, true), err)
        assert.truthy(T.laws("longest", { node = node }):find("ok (commutative", 1, true))
        ok, err = pcall(T.laws, "first", { node = node })
        assert.is_false(ok)
        assert.truthy(err:find("resolver laws broken (moord --check):\nresolver 'first': not commutative", 1, true), err)
    end)

    it("loads a config here for direct calls", function()
        local t = T.load_config(CONFIG, { greeting = "hey" })
        assert.equal("function", type(t.handlers.hello.fn))
        assert.equal("b", t.resolvers.first({ { value = "b" }, { value = "a" } }))
        assert.equal("function", type(t.resolvers.lww))
    end)

    it("stops and kills", function()
        local pid = node.pid
        assert.is_true(node:stop())
        assert.is_false(alive(pid))
        assert.is_false(node:running())
        node:restart()
        pid = node.pid
        node:kill()
        assert.is_false(alive(pid))
    end)
end)

describe("moor.testing errors", function()
    teardown(T.stop_all)

    it("says when a config does not take listen from moor.arg", function()
        local ok, err = pcall(T.node, { config = [[
moor.cfg{ node = "n1", listen = "127.0.0.1:0", data_dir = moor.arg.data_dir }
]] })
        assert.is_false(ok)
        assert.truthy(err:find("does not take listen from moor.arg.listen", 1, true), err)
    end)

    it("shows moord's output when the config is broken", function()
        local ok, err = pcall(T.node, { config = HEAD .. "moor.space('x', { n = 'many' })\n" })
        assert.is_false(ok)
        assert.truthy(err:find("moord exited during start-up", 1, true), err)
        assert.truthy(err:find("moor.space('x')", 1, true), err)
    end)

    it("refuses a config path that does not exist", function()
        assert.has_error(function() T.node{ config = "/nonexistent/moor.lua" } end,
                         "moor.testing: no config file at /nonexistent/moor.lua")
    end)
end)

describe("moor.testing cleanup", function()
    it("stop_all stops every node and removes its directory", function()
        local a = T.node{ config = CONFIG }
        local b = T.node{ config = CONFIG }
        local pids, dirs = { a.pid, b.pid }, { a.dir, b.dir }
        T.stop_all()
        for i = 1, 2 do
            assert.is_false(alive(pids[i]))
            assert.is_false(exists(dirs[i] .. "/moord.out"))
        end
    end)

    it("kills a node whose test process died (the watchdog)", function()
        local dir = os.tmpname()
        local script = dir .. ".lua"
        local f = assert(io.open(script, "w"))
        f:write("local T = require('moor.testing')\n",
                "local n = T.node{ config = ", string.format("%q", CONFIG), " }\n",
                "io.stdout:write(n.pid, ' ', n.dir, '\\n'); io.stdout:flush()\n",
                "os.execute('sleep 60')\n")
        f:close()
        local out = dir .. ".out"
        local p = assert(io.popen("LUA_PATH=" .. string.format("%q", package.path)
                                  .. " luajit " .. script .. " >" .. out .. " 2>&1 & echo $!"))
        local child = tonumber(p:read("*l"))
        p:close()
        local function output()
            local o = io.open(out, "rb")
            local text = o and o:read("*a") or ""
            if o then
                o:close()
            end
            return text
        end
        local pid, ndir
        local deadline = socket.gettime() + 30
        while not pid and socket.gettime() < deadline and alive(child) do
            pid, ndir = output():match("^(%d+) (%S+)")
            socket.sleep(0.1)
        end
        sh("kill -9 " .. child)
        if not pid then
            sh("rm -f '" .. script .. "' '" .. out .. "' '" .. dir .. "'")
        end
        assert.truthy(pid, "the child never started its node: " .. output())
        local gone = wait_gone(tonumber(pid), 15)
        if not gone then
            sh("kill -9 " .. pid)
        end
        sh("rm -rf '" .. ndir .. "'; rm -f '" .. script .. "' '" .. out .. "' '" .. dir .. "'")
        assert.is_true(gone, "moord " .. pid .. " outlived its test process")
    end)
end)
