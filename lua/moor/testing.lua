--[==[
moor.testing -- a test kit for your Lua on Moor, for busted (LuaJIT).

  local T = require("moor.testing")
  teardown(T.stop_all)                          -- nothing outlives the spec file

  local node = T.node{ config = "my_config.lua" }   -- or config = [[ lua text ]]
  assert.same(6, node:call("incr", "k", 6))
  local r = T.siblings(node, "scores", "k", { 3, 9, 4 })  -- concurrent writes
  assert.same({ 9 }, r.values)                  -- what the space's resolver made
  T.laws(function(siblings) ... end, { values = "number" })  -- fails the test if broken
  node:stop()

  local c = T.cluster{ size = 3, config = "my_config.lua" }  -- 127.0.0.1 .. 127.0.0.3

The config.  moord runs your config file unchanged, with moor.arg
holding what the kit chose (moord --node / --set): node (the id: "n1",
"n2", ...), listen ("127.0.0.I:PORT", a free port), data_dir (in the
node's scratch directory) and, in a cluster, seeds (every member's
address, comma-separated) and cluster_secret (made up per cluster).  So a
config written for the kit reads them:

  local seeds = {}
  for s in (moor.arg.seeds or ""):gmatch("[^,]+") do seeds[#seeds + 1] = s end
  moor.cfg{ node = moor.arg.node or "n1", listen = moor.arg.listen or "127.0.0.1:7700",
            data_dir = moor.arg.data_dir or "data", seeds = moor.arg.seeds and seeds,
            cluster_secret = moor.arg.cluster_secret }

(examples/testing/config.lua is such a config).  A config that listens
elsewhere is reported at start ("the config does not take listen from
moor.arg.listen").  opts.set adds moor.arg values of your own.

T.node(opts) starts one moord and returns a node once it answers ping:
  opts.config   a path to a config file, or Lua text (anything with a
                newline), written to the node's directory
  opts.set      {key = "value"}: more moor.arg values
  opts.moord    path of moord; default: env MOOR_MOORD, else
                $MOOR_BUILD/moord, else build/moord of the source tree this
                module lives in, else moord on PATH
  opts.token    auth_token for the clients the node makes
  opts.id, opts.host, opts.port   "n1", "127.0.0.1", a free port
  opts.start_timeout   seconds to wait for ping (15)
node fields and methods:
  node.id, node.addr ("host:port"), node.dir (its scratch directory:
  config.lua when given as text, data/, moord.out), node.pid
  node:client([opts])   a new connected moor.client (closed by stop)
  node:call(name, ...)  calls a handler: result or nil, "CODE: message"
  node:get(key [, opts]), node:put(key, value [, opts]), node:del(key [, opts])
                        the moor.client calls, on a client the node keeps
  node:stop()           SIGTERM, waits (10 s) for the exit, else SIGKILL;
                        returns true when it stopped by itself
  node:kill()           SIGKILL (data stays as a crash leaves it)
  node:restart()        stop (if running) and start again: same port, same data
  node:output()         what moord printed (stdout and stderr, its log)
T.cluster(opts) starts opts.size (3) nodes n1..nN on 127.0.0.1..127.0.0.N,
each seeding all, and waits until every node's ring lists every member up
(opts.converge_timeout, 30 s).  Same opts as T.node otherwise (a config
for all).  cluster.nodes[i], cluster:node(i), cluster:client(i),
cluster:call(name, ...) (through n1), cluster:stop() (stops every node).
T.siblings(node_or_cluster, space, key, values) puts each value of the
list with no ctx (blind writes: each one becomes a sibling beside the
others; in a cluster they go through the nodes in turn), then returns the
get of the key: every sibling, or what the space's resolver made of them.
T.laws(resolver, opts) checks resolver (a function, or the name of a
resolvers.* plugin) with moor.laws.check(resolver, opts) and raises a
readable failure naming each broken law and its input; returns the
report.  T.laws(name, {config = path_or_text [, set = {...}]}) checks the resolver
that config registers as name, with the check options it gave
moor.resolver (its third argument), here in busted.  T.laws(name, {node =
node}) asks moord instead: it runs `moord CONFIG --check` on that node's
config and fails on that resolver's lines unless they say ok.
T.load_config(config [, set]) runs a config here (plain LuaJIT, not the
node's sandbox; moor.arg as a node "n1" gets, plus set) and returns its
normalised table: t.resolvers[name], t.handlers[name].fn, t.spaces, ...
so a spec can call a resolver or handler function directly.
T.stop_all() stops every node the kit started and removes their scratch
directories (env MOOR_KEEP=1 keeps them); give it to busted's teardown.
Should the test process itself die, each moord is killed within about a
second by a watchdog started with it.

Every wait is bounded (start, stop, convergence); nothing here asserts a
time.  Needs LuaSocket (Debian lua-socket) and a POSIX shell.
]==]

local client = require("moor.client")
local laws = require("moor.laws")

local type, pairs, ipairs, tostring, tonumber, error, pcall = type, pairs, ipairs, tostring,
    tonumber, error, pcall
local setmetatable, getmetatable = setmetatable, getmetatable
local format, concat = string.format, table.concat

local M = {}

M.START_TIMEOUT_S = 15
M.STOP_GRACE_S = 10
M.CONVERGE_S = 30
M.CLIENT_TIMEOUT_S = 10

local socket_ok, socket = pcall(require, "socket")

local started = {} -- every node started and not yet cleaned up, in order

-- ---- processes and files ------------------------------------------------------

local function need_socket()
    if not socket_ok then
        error("moor.testing needs LuaSocket (apt-get install lua-socket)", 3)
    end
end

local function shq(s)
    return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function sh(cmd)
    local r = os.execute(cmd)
    return r == 0 or r == true
end

local function sh_out(cmd)
    local p = io.popen(cmd)
    if not p then
        return nil
    end
    local out = p:read("*a")
    p:close()
    return out
end

local function exists(path)
    local f = io.open(path, "rb")
    if f then
        f:close()
        return true
    end
    return false
end

local function read_file(path)
    local f = io.open(path, "rb")
    if not f then
        return ""
    end
    local s = f:read("*a") or ""
    f:close()
    return s
end

local function write_file(path, s)
    local f = assert(io.open(path, "wb"))
    assert(f:write(s))
    assert(f:close())
end

local function alive(pid)
    local f = io.open("/proc/" .. pid .. "/stat", "rb")
    if not f then
        if exists("/proc/self/stat") then
            return false
        end
        return sh("kill -0 " .. pid .. " 2>/dev/null")
    end
    local s = f:read("*a") or ""
    f:close()
    local state = s:match("%) (%a)")
    return state ~= nil and state ~= "Z"
end

local function wait_exit(pid, seconds)
    local deadline = socket.gettime() + seconds
    while alive(pid) do
        if socket.gettime() >= deadline then
            return false
        end
        socket.sleep(0.05)
    end
    return true
end

-- This process's pid (for the watchdogs), or nil without /proc.
local function self_pid()
    local f = io.open("/proc/self/stat", "rb")
    if not f then
        return nil
    end
    local s = f:read("*l") or ""
    f:close()
    return tonumber(s:match("^(%d+)"))
end

local function free_port(host)
    local s = assert(socket.bind(host, 0))
    local _, port = s:getsockname()
    s:close()
    return assert(tonumber(port), "no port from getsockname")
end

local function scratch_dir()
    local out = sh_out("mktemp -d \"${TMPDIR:-/tmp}/moor-testing.XXXXXX\"")
    local dir = out and out:match("^(%S+)")
    if not dir then
        error("moor.testing: mktemp -d failed", 3)
    end
    return dir
end

local function remove_dir(dir)
    if dir and dir:match("/moor%-testing%.[%w]+$") then
        sh("rm -rf " .. shq(dir))
    end
end

local function tail(s, n)
    n = n or 3000
    return #s > n and ("..." .. s:sub(-n)) or s
end

-- ---- finding moord ---------------------------------------------------------------

-- The repository (or share/ directory) this file lives in: .../lua/moor/testing.lua.
-- (an installed copy, PREFIX/share/lua/5.1/moor/testing.lua, answers
-- PREFIX/share/moor, where make install puts lua/ and plugins/).
local function source_root()
    local src = debug and debug.getinfo and debug.getinfo(1, "S").source or ""
    local path = src:match("^@(.*)$")
    if not path then
        return nil
    end
    local prefix = ("/" .. path):match("^/(.*)/share/lua/5%.1/moor/testing%.lua$")
    if prefix then
        return prefix .. "/share/moor"
    end
    local dir = ("/" .. path):match("^(.*)/lua/moor/testing%.lua$")
    return dir and (dir == "" and "." or dir:sub(2))
end

-- require for plugins ("resolvers.lww"): package.path first, then the
-- plugins/ directory of MOOR_ROOT or of this module's tree.
local function plugin_require(name)
    local ok, mod = pcall(require, name)
    if ok then
        return mod
    end
    local rel = "/plugins/" .. name:gsub("%.", "/") .. ".lua"
    for _, root in ipairs({ os.getenv("MOOR_ROOT") or false, source_root() or false }) do
        if root and exists(root .. rel) then
            return dofile(root .. rel)
        end
    end
    error(mod, 0)
end

function M.moord_path(explicit)
    if explicit then
        return explicit
    end
    local env = os.getenv("MOOR_MOORD")
    if env and env ~= "" then
        return env
    end
    local build = os.getenv("MOOR_BUILD")
    if build and build ~= "" and exists(build .. "/moord") then
        return build .. "/moord"
    end
    local root = source_root()
    if root and exists(root .. "/build/moord") then
        return root .. "/build/moord"
    end
    local found = sh_out("command -v moord 2>/dev/null")
    found = found and found:match("^(%S+)")
    if found then
        return found
    end
    error("moor.testing: moord not found: set MOOR_MOORD to its path (or opts.moord)", 3)
end

-- ---- a node ------------------------------------------------------------------------

local Node = {}
Node.__index = Node

local function absolute(path)
    if path:sub(1, 1) == "/" then
        return path
    end
    local cwd = os.getenv("PWD") or (sh_out("pwd") or ""):match("^(%S+)") or "."
    return cwd .. "/" .. path
end

-- Where the config comes from: a path, or text written into dir.
local function config_file(config, dir)
    if type(config) ~= "string" or config == "" then
        error("moor.testing: config must be a path or Lua text, got " .. type(config), 4)
    end
    if config:find("\n", 1, true) then
        local path = dir .. "/config.lua"
        write_file(path, config)
        return path
    end
    if not exists(config) then
        error("moor.testing: no config file at " .. config, 4)
    end
    return absolute(config)
end

-- moord's command line for this node; extra: more flags ("--check").
local function moord_command(self, extra)
    local args = { shq(self.moord), shq(self.config), extra or "", "--node", shq(self.id),
                   "--set", shq("listen=" .. self.addr), "--set", shq("data_dir=" .. self.dir .. "/data") }
    for k, v in pairs(self.set) do
        args[#args + 1] = "--set"
        args[#args + 1] = shq(tostring(k) .. "=" .. tostring(v))
    end
    return concat(args, " ")
end

-- "moord: node n1 listening on 127.0.0.1:7700" in the output since offset.
local function listening_on(self, offset)
    local out = read_file(self.dir .. "/moord.out"):sub(offset + 1)
    return out:match("moord: node %S+ listening on (%S+),")
end

local function ping_ok(self)
    local c = client.connect(self.addr, { timeout = 0.5, token = self.token })
    if not c then
        return false
    end
    local pong = c:ping()
    c:close()
    return pong ~= nil
end

-- Starts moord once; true, or nil and why (the process is gone then).
local function try_start(self)
    local out = self.dir .. "/moord.out"
    local offset = #read_file(out)
    local p = assert(io.popen(moord_command(self) .. " </dev/null >>" .. shq(out) .. " 2>&1 & echo $!"))
    local pid = tonumber(p:read("*l"))
    p:close()
    if not pid then
        return nil, "could not start " .. self.moord
    end
    self.pid = pid
    local me = self_pid()
    if me then -- kills moord should this process die without stopping it
        sh(format("(while kill -0 %d 2>/dev/null && kill -0 %d 2>/dev/null; do sleep 1; done; "
                  .. "kill -9 %d 2>/dev/null) </dev/null >/dev/null 2>&1 &", me, pid, pid))
    end
    local deadline = socket.gettime() + self.start_timeout
    while socket.gettime() < deadline do
        if not alive(pid) then
            self.pid = nil
            return nil, "moord exited during start-up"
        end
        local at = listening_on(self, offset)
        if at and at ~= self.addr then
            self:kill()
            return nil, format("the config does not take listen from moor.arg.listen: moord listens on %s, not %s "
                               .. "(see moor.testing: a config takes node, listen and data_dir from moor.arg)", at, self.addr)
        end
        if at and ping_ok(self) then
            return true
        end
        socket.sleep(0.05)
    end
    self:kill()
    return nil, format("moord did not answer ping on %s within %d s", self.addr, self.start_timeout)
end

function Node:start()
    local why
    for attempt = 1, 3 do
        local ok
        ok, why = try_start(self)
        if ok then
            return self
        end
        -- another process may have taken the free port: a new one, unless fixed
        local out = read_file(self.dir .. "/moord.out")
        if self.fixed_port or attempt == 3 or not out:find("cannot listen", 1, true) then
            break
        end
        self.port = free_port(self.host)
        self.addr = self.host .. ":" .. self.port
    end
    error(format("moor.testing: node %s: %s\n--- moord output (%s):\n%s", self.id, why,
                 self.dir .. "/moord.out", tail(self:output())), 0)
end

local function new_node(opts, id, host, extra_set)
    need_socket()
    local self = setmetatable({}, Node)
    self.id = id or opts.id or "n1"
    self.host = host or opts.host or "127.0.0.1"
    self.fixed_port = opts.port ~= nil
    self.port = opts.port or free_port(self.host)
    self.addr = self.host .. ":" .. self.port
    self.moord = M.moord_path(opts.moord)
    self.token = opts.token
    self.start_timeout = opts.start_timeout or M.START_TIMEOUT_S
    self.clients = {}
    self.dir = scratch_dir()
    started[#started + 1] = self
    self.config = config_file(opts.config, self.dir)
    self.set = {}
    for k, v in pairs(opts.set or {}) do
        self.set[k] = v
    end
    for k, v in pairs(extra_set or {}) do
        self.set[k] = v
    end
    return self
end

function M.node(opts)
    opts = opts or {}
    return new_node(opts):start()
end

function Node:output()
    return read_file(self.dir .. "/moord.out")
end

function Node:client(opts)
    opts = opts or {}
    local c, err = client.connect(self.addr, { timeout = opts.timeout or M.CLIENT_TIMEOUT_S,
                                               token = opts.token or self.token })
    if not c then
        error(format("moor.testing: cannot connect to node %s (%s): %s", self.id, self.addr, err), 2)
    end
    self.clients[#self.clients + 1] = c
    return c
end

-- The client the node's own calls share (made again after a restart).
local function shared(self)
    if not self.shared then
        self.shared = self:client()
    end
    return self.shared
end

function Node:call(name, ...)
    return shared(self):call(name, ...)
end

function Node:get(key, opts)
    return shared(self):get(key, opts)
end

function Node:put(key, value, opts)
    return shared(self):put(key, value, opts)
end

function Node:del(key, opts)
    return shared(self):del(key, opts)
end

local function close_clients(self)
    for _, c in ipairs(self.clients) do
        c:close()
    end
    self.clients, self.shared = {}, nil
end

function Node:stop()
    close_clients(self)
    local pid = self.pid
    self.pid = nil
    if not pid then
        return true
    end
    sh("kill -TERM " .. pid .. " 2>/dev/null")
    if wait_exit(pid, M.STOP_GRACE_S) then
        return true
    end
    sh("kill -KILL " .. pid .. " 2>/dev/null")
    wait_exit(pid, 5)
    return false
end

function Node:kill()
    close_clients(self)
    local pid = self.pid
    self.pid = nil
    if pid then
        sh("kill -KILL " .. pid .. " 2>/dev/null")
        wait_exit(pid, 5)
    end
end

function Node:restart()
    self:stop()
    self.fixed_port = true -- the same address: peers and clients know it
    return self:start()
end

function Node:running()
    return self.pid ~= nil and alive(self.pid)
end

-- ---- a cluster -------------------------------------------------------------------

local Cluster = {}
Cluster.__index = Cluster

local function random_secret()
    local f = io.open("/dev/urandom", "rb")
    local bytes = f and f:read(16) or tostring(os.time()) .. tostring({})
    if f then
        f:close()
    end
    return "secret-" .. bytes:gsub(".", function(c) return format("%02x", c:byte()) end)
end

-- nil when every node lists every member up, else why not.
local function not_converged(self)
    for _, n in ipairs(self.nodes) do
        if not n:running() then
            return n.id .. " is not running"
        end
        local c = client.connect(n.addr, { timeout = 2, token = n.token })
        if not c then
            return "cannot connect to " .. n.id
        end
        local ring, err = c:request("ring")
        c:close()
        if not ring then
            return "ring on " .. n.id .. ": " .. tostring(err)
        end
        local up = {}
        for _, m in ipairs(ring.nodes or {}) do
            if m.status == "up" then
                up[m.id] = m.addr
            end
        end
        for _, m in ipairs(self.nodes) do
            if up[m.id] ~= m.addr then
                return n.id .. " does not see " .. m.id .. " up at " .. m.addr
            end
        end
    end
    return nil
end

function Cluster:wait_converged(timeout)
    local deadline = socket.gettime() + (timeout or M.CONVERGE_S)
    local why = not_converged(self)
    while why do
        if socket.gettime() >= deadline then
            error(format("moor.testing: the cluster did not converge within %d s: %s",
                         timeout or M.CONVERGE_S, why), 2)
        end
        socket.sleep(0.2)
        why = not_converged(self)
    end
    return self
end

function M.cluster(opts)
    opts = opts or {}
    local size = opts.size or 3
    if type(size) ~= "number" or size < 1 or size > 32 then
        error("moor.testing: cluster size must be 1..32", 2)
    end
    local self = setmetatable({ nodes = {} }, Cluster)
    local secret = opts.secret or random_secret()
    local addrs = {}
    for i = 1, size do
        local host = "127.0.0." .. i
        local n = new_node({ config = opts.config, set = opts.set, moord = opts.moord, token = opts.token,
                             start_timeout = opts.start_timeout }, "n" .. i, host)
        self.nodes[i] = n
        addrs[i] = n.addr
    end
    local seeds = concat(addrs, ",")
    for _, n in ipairs(self.nodes) do
        n.set.seeds = seeds
        n.set.cluster_secret = secret
        n.fixed_port = true -- every seed list names it
    end
    for _, n in ipairs(self.nodes) do
        n:start()
    end
    return self:wait_converged(opts.converge_timeout)
end

function Cluster:node(i)
    return self.nodes[i] or error("moor.testing: no node " .. tostring(i) .. " in this cluster", 2)
end

function Cluster:client(i, opts)
    return self:node(i or 1):client(opts)
end

function Cluster:call(name, ...)
    return self.nodes[1]:call(name, ...)
end

function Cluster:stop()
    local all = true
    for _, n in ipairs(self.nodes) do
        all = n:stop() and all
    end
    return all
end

-- ---- siblings and laws ---------------------------------------------------------------

function M.siblings(target, space, key, values)
    local nodes = getmetatable(target) == Cluster and target.nodes or { target }
    if getmetatable(nodes[1]) ~= Node then
        error("moor.testing.siblings: expects a node or a cluster", 2)
    end
    if type(values) ~= "table" or #values == 0 then
        error("moor.testing.siblings: expects a list of values", 2)
    end
    local opts = space and { space = space } or nil
    for i, v in ipairs(values) do
        local n = nodes[(i - 1) % #nodes + 1]
        local ok, err = n:put(key, v, opts)
        if not ok then
            error(format("moor.testing.siblings: put %d through %s: %s", i, n.id, tostring(err)), 2)
        end
    end
    local res, err = nodes[1]:get(key, opts)
    if err then
        error("moor.testing.siblings: get: " .. tostring(err), 2)
    end
    return res
end

local function plugin_resolver(name)
    local ok, fn = pcall(plugin_require, "resolvers." .. name)
    return ok and type(fn) == "function" and fn or nil
end

-- T.laws(name, {node = n}): the node's moord --check on its config.
local function laws_on_node(name, node)
    local out = sh_out(moord_command(node, "--check") .. " 2>&1") or ""
    local mine, prefix = {}, "resolver '" .. name .. "': "
    for line in out:gmatch("[^\n]+") do
        if line:sub(1, #prefix) == prefix then
            mine[#mine + 1] = line
        end
    end
    if #mine == 0 then
        error(format("moor.testing.laws: moord --check reports nothing for resolver '%s':\n%s",
                     name, tail(out)), 3)
    end
    if #mine > 1 or not mine[1]:find("': ok (", 1, true) then
        error("resolver laws broken (moord --check):\n" .. concat(mine, "\n"), 3)
    end
    return mine[1]
end

function M.load_config(config, set)
    local cfg = require("moor.config")
    local mp = require("moor.msgpack")
    local path, dir = config, nil
    if type(config) == "string" and config:find("\n", 1, true) then
        dir = scratch_dir()
        path = config_file(config, dir)
    elseif type(config) ~= "string" or not exists(config) then
        error("moor.testing.load_config: no config file at " .. tostring(config), 2)
    end
    local arg = { node = "n1", listen = "127.0.0.1:7700", data_dir = "data" }
    for k, v in pairs(set or {}) do
        arg[k] = tostring(v)
    end
    local moor = { arg = arg, map = mp.map, array = mp.array, bin = mp.bin, encode = mp.encode,
                   decode = mp.decode, now = function() return socket_ok and socket.gettime() * 1000 or os.time() * 1000 end,
                   log = function() end }
    local env = setmetatable({ moor = moor }, { __index = _G })
    local ok, t = pcall(cfg.run, path, env, moor, { require = plugin_require })
    remove_dir(dir)
    if not ok then
        error("moor.testing.load_config: " .. tostring(t), 2)
    end
    return t
end

-- The check options a resolver of config table t was registered with.
local function check_opts(t, name, opts)
    local c = t.resolver_checks and t.resolver_checks[name] or {}
    if c.plugin then
        c = laws.PLUGINS[c.plugin] or {}
    end
    local o = {}
    for k, v in pairs(c) do
        o[k] = v
    end
    for k, v in pairs(opts) do
        if k ~= "config" and k ~= "set" then
            o[k] = v
        end
    end
    return o
end

function M.laws(resolver, opts)
    opts = opts or {}
    if type(resolver) == "string" and opts.config then
        local t = M.load_config(opts.config, opts.set)
        local fn = t.resolvers and t.resolvers[resolver]
        if type(fn) ~= "function" then
            error("moor.testing.laws: the config registers no resolver named '" .. resolver .. "'", 2)
        end
        opts = check_opts(t, resolver, opts)
        resolver = fn
    elseif type(resolver) == "string" then
        if opts.node then
            return laws_on_node(resolver, opts.node)
        end
        local fn = plugin_resolver(resolver)
        if not fn then
            error("moor.testing.laws: no resolver plugin named '" .. resolver
                  .. "' (give a function, or {node = node} to ask moord)", 2)
        end
        local p = laws.PLUGINS["resolvers." .. resolver] or {}
        local o = {}
        for k, v in pairs(opts) do
            o[k] = v
        end
        o.values = o.values or p.values
        resolver = fn
        opts = o
    end
    if type(resolver) ~= "function" then
        error("moor.testing.laws: expects a resolver function or a plugin name, got " .. type(resolver), 2)
    end
    local ok, report = laws.check(resolver, opts)
    if not ok then
        error("resolver laws broken:\n" .. report.text, 2)
    end
    return report
end

function M.stop_all()
    for i = #started, 1, -1 do
        local n = started[i]
        n:stop()
        if os.getenv("MOOR_KEEP") ~= "1" then
            remove_dir(n.dir)
        end
        started[i] = nil
    end
end

M.Node, M.Cluster = Node, Cluster

return M
