--[[
moor.client -- a Lua client for a Moor node (MessagePack-RPC over TCP).

  local client = require("moor.client")
  local c = assert(client.connect("127.0.0.1:7700", {timeout = 5, token = nil}))
  local w = assert(c:put("k", {1, 2, 3}))            -- {ctx = <string>}
  local r, err = c:get("k")                          -- {values = {...}, ctx = ...}
  assert(c:put("k", "new", {ctx = r.ctx}))           -- replaces what r saw
  assert(c:del("k", {ctx = w.ctx}))
  local n = assert(c:call("incr", "counter", 1))
  local page = assert(c:scan({limit = 100}))        -- {keys = {...}, cursor = ...}
  for key in c:scan_all({prefix = "user:"}) do print(key) end
  c:close()

Calls block for their answer (bounded by the timeout, in seconds) and
return the result, or nil and "CODE: message": the node's error code
(NOAUTH, HANDLER_ERROR, ...) or one of the client's own:
  CONNECT   could not connect           TIMEOUT   no answer in time
  CLOSED    the connection is gone      PROTOCOL  the node sent garbage
  NETWORK   a socket error              ENCODE    a value cannot be encoded
Misuse (a key that is not a string, opts that is not a table) raises.
get of a missing key returns nil with no error.  A call whose handler
returns nil also returns nil with no error.

Pipelining: c:send(method, ...) queues a request with raw params and
returns its msgid; c:recv() returns msgid, result, err for the next answer,
in whatever order the node answers.  Blocking calls and pipelined ones can
be mixed: answers are matched by msgid, and the ones nobody waits for yet
are kept for recv().  After a TIMEOUT the connection stays usable (a late
answer is dropped); after CLOSED, NETWORK or PROTOCOL it is broken and
every call returns that error.

Values: see moor.msgpack for how Lua values map to MessagePack.  A ctx is
a string; the client sends it as MessagePack bin.  opts tables are sent as
maps (also when empty).

Transport: LuaSocket TCP by default.  opts.transport replaces it (the specs
use this): an object with send(data, timeout_s) -> true | nil, err;
receive(timeout_s) -> chunk | nil, err ("timeout", "closed" or another
message); close().  One client per coroutine/thread; not shareable.
]]

local mp = require("moor.msgpack")

local type, tostring, tonumber, select, pairs = type, tostring, tonumber, select, pairs
local setmetatable, error = setmetatable, error

local M = {}

M.DEFAULT_TIMEOUT = 5
-- The largest answer taken: MOOR_LIMIT_MAX_ANSWER (core/util/limits.h), as
-- the C client; a get answers every sibling, so more than any request.
M.MAX_FRAME = 128 * 1024 * 1024
local FLUSH_AT = 64 * 1024
local MSGID_LIMIT = 4294967296 -- msgids are uint32

-- LuaSocket transport ------------------------------------------------------

local Tcp = {}
Tcp.__index = Tcp

-- Connects to host:port.  Returns a transport or nil, err.
function M.tcp_transport(host, port, timeout)
    local ok, socket = pcall(require, "socket")
    if not ok then
        return nil, "CONNECT: LuaSocket is not installed (apt-get install lua-socket)"
    end
    local sock, err = socket.tcp()
    if not sock then
        return nil, "CONNECT: " .. tostring(err)
    end
    sock:settimeout(timeout)
    local cok, cerr = sock:connect(host, port)
    if not cok then
        sock:close()
        return nil, string.format("CONNECT: cannot connect to %s:%d: %s", host, port, tostring(cerr))
    end
    sock:setoption("tcp-nodelay", true)
    return setmetatable({ sock = sock, socket = socket }, Tcp)
end

function Tcp:send(data, timeout)
    local deadline = self.socket.gettime() + timeout
    local i = 1
    while i <= #data do
        local left = deadline - self.socket.gettime()
        if left <= 0 then
            return nil, "timeout"
        end
        self.sock:settimeout(left)
        local last, err, partial = self.sock:send(data, i)
        if last then
            i = last + 1
        elseif err == "timeout" then
            i = (partial or i - 1) + 1
        else
            return nil, err
        end
    end
    return true
end

-- Whatever bytes are available within timeout seconds (at least one).
function Tcp:receive(timeout)
    local deadline = self.socket.gettime() + timeout
    while true do
        if not self.sock:dirty() then
            local left = deadline - self.socket.gettime()
            if left <= 0 then
                return nil, "timeout"
            end
            local readable, _, serr = self.socket.select({ self.sock }, nil, left)
            if not readable[1] then
                if serr == "timeout" then
                    return nil, "timeout"
                end
                return nil, serr or "select failed"
            end
        end
        self.sock:settimeout(0)
        local data, err, partial = self.sock:receive(FLUSH_AT)
        if data then
            return data
        elseif partial and #partial > 0 then
            return partial
        elseif err ~= "timeout" then
            return nil, err -- "closed" or a socket error
        end
    end
end

function Tcp:close()
    self.sock:close()
end

-- Addresses ------------------------------------------------------------------

-- "host:port" or "[v6]:port" -> host, port; or nil, err.
function M.parse_addr(addr)
    if type(addr) ~= "string" then
        return nil, "address must be a string \"host:port\""
    end
    local host, port = addr:match("^%[(.+)%]:(%d+)$")
    if not host then
        host, port = addr:match("^([^:]+):(%d+)$")
    end
    port = tonumber(port)
    if not host or not port or port < 1 or port > 65535 then
        return nil, "bad address " .. string.format("%q", addr) .. " (expected host:port)"
    end
    return host, port
end

-- Client -------------------------------------------------------------------

local Client = {}
Client.__index = Client

local function now_s(self)
    return self.clock()
end

local function default_clock()
    local ok, socket = pcall(require, "socket")
    if ok then
        return socket.gettime
    end
    return os.time
end

-- Connects; with opts.token also authenticates.  Returns a client or
-- nil, "CODE: message".
function M.connect(addr, opts)
    opts = opts or {}
    local host, port = M.parse_addr(addr)
    if not host then
        return nil, "CONNECT: " .. port
    end
    local timeout = opts.timeout or M.DEFAULT_TIMEOUT
    local t, err = opts.transport, nil
    if not t then
        t, err = M.tcp_transport(host, port, timeout)
        if not t then
            return nil, err
        end
    end
    local c = setmetatable({
        t = t,
        addr = addr,
        timeout = timeout,
        clock = opts.clock or default_clock(),
        reader = mp.reader({ max_size = opts.max_frame or M.MAX_FRAME }),
        wbuf = {},
        wlen = 0,
        next_id = 0,
        pending = {},     -- msgid -> true (awaited) or "abandoned" (timed out)
        ready = {},       -- msgid -> answer, for answers nobody took yet
        ready_order = {}, -- msgids in the order their answers arrived
        broken = nil,     -- "CODE: message" once the stream is unusable
    }, Client)
    if opts.token ~= nil then
        local ok, aerr = c:auth(opts.token)
        if not ok then
            c:close()
            return nil, aerr
        end
    end
    return c
end

function Client:settimeout(seconds)
    self.timeout = seconds
end

function Client:close()
    if self.t then
        self.t:close()
        self.t = nil
    end
    self.broken = self.broken or "CLOSED: the client was closed"
end

local function break_with(self, err)
    self.broken = err
    if self.t then
        self.t:close()
        self.t = nil
    end
    return nil, err
end

local function alloc_msgid(self)
    for _ = 1, 16 do
        local id = self.next_id
        self.next_id = (id + 1) % MSGID_LIMIT
        if self.pending[id] == nil and self.ready[id] == nil then
            return id
        end
    end
    error("moor.client: too many requests in flight")
end

-- Writes out whatever send() queued.  true or nil, err.
function Client:flush()
    if self.broken then
        return nil, self.broken
    end
    if self.wlen == 0 then
        return true
    end
    local data = table.concat(self.wbuf)
    self.wbuf, self.wlen = {}, 0
    local ok, err = self.t:send(data, self.timeout)
    if not ok then
        if err == "timeout" then
            return break_with(self, "TIMEOUT: could not send to " .. self.addr .. " within "
                .. self.timeout .. " s")
        end
        return break_with(self, (err == "closed" and "CLOSED: " or "NETWORK: ") .. tostring(err))
    end
    return true
end

-- Queues request [0, msgid, method, params] with params = the arguments
-- as given (nils kept).  Returns msgid or nil, err.
function Client:send(method, ...)
    if type(method) ~= "string" then
        error("moor.client: method must be a string", 2)
    end
    if self.broken then
        return nil, self.broken
    end
    local id = alloc_msgid(self)
    local params = mp.array({ ... }, select("#", ...))
    local frame, err = mp.encode({ 0, id, method, params })
    if not frame then
        return nil, "ENCODE: " .. err
    end
    self.wbuf[#self.wbuf + 1] = frame
    self.wlen = self.wlen + #frame
    self.pending[id] = true
    if self.wlen >= FLUSH_AT then
        local ok, ferr = self:flush()
        if not ok then
            return nil, ferr
        end
    end
    return id
end

local function format_error(e)
    if type(e) == "table" then
        return tostring(e[1] or "ERROR") .. ": " .. tostring(e[2] or "")
    end
    return "ERROR: " .. tostring(e)
end

-- Reads until one whole frame is there.  frame or nil, err.
local function read_frame(self, deadline)
    while true do
        local ok, v = self.reader:next()
        if ok then
            return v
        elseif ok == nil then
            return break_with(self, "PROTOCOL: bad MessagePack from " .. self.addr .. ": " .. v)
        end
        local left = deadline - now_s(self)
        if left <= 0 then
            return nil, "TIMEOUT: no answer from " .. self.addr .. " within " .. self.timeout .. " s"
        end
        local chunk, err = self.t:receive(left)
        if not chunk then
            if err == "timeout" then
                return nil, "TIMEOUT: no answer from " .. self.addr .. " within " .. self.timeout
                    .. " s"
            elseif err == "closed" then
                return break_with(self, "CLOSED: " .. self.addr .. " closed the connection")
            end
            return break_with(self, "NETWORK: " .. tostring(err))
        end
        self.reader:feed(chunk)
    end
end

-- Reads one response frame and files it.  Returns msgid, answer for an
-- awaited response; false for one that was dropped (abandoned,
-- notification); nil, err on failure.
local function read_response(self, deadline)
    local f, err = read_frame(self, deadline)
    if f == nil and err then
        return nil, err
    end
    if type(f) ~= "table" then
        return break_with(self, "PROTOCOL: a frame that is not an array: " .. tostring(f))
    end
    if f[1] == 2 then
        return false -- a notification: nothing in this client listens to them
    end
    local id = f[2]
    if f[1] ~= 1 or type(id) ~= "number" or self.pending[id] == nil then
        return break_with(self, "PROTOCOL: unexpected frame (type " .. tostring(f[1]) .. ", msgid "
            .. tostring(id) .. ")")
    end
    local state = self.pending[id]
    self.pending[id] = nil
    if state == "abandoned" then
        return false
    end
    local answer = { result = f[4] }
    if f[3] ~= nil then
        answer.err = format_error(f[3])
    end
    return id, answer
end

-- Next answer, in arrival order: msgid, result, err.  On a transport
-- failure or timeout: nil, nil, err.
function Client:recv()
    local first = table.remove(self.ready_order, 1)
    if first ~= nil then
        local a = self.ready[first]
        self.ready[first] = nil
        return first, a.result, a.err
    end
    local ok, err = self:flush()
    if not ok then
        return nil, nil, err
    end
    if self:inflight() == 0 then
        return nil, nil, "CLOSED: nothing in flight to receive"
    end
    local deadline = now_s(self) + self.timeout
    while true do
        local id, a = read_response(self, deadline)
        if id == nil then
            return nil, nil, a
        elseif id then
            return id, a.result, a.err
        end
    end
end

-- Waits for the answer to msgid; keeps others for recv().
local function wait(self, id)
    local ok, err = self:flush()
    if not ok then
        return nil, err
    end
    local deadline = now_s(self) + self.timeout
    while true do
        local got, a = read_response(self, deadline)
        if got == nil then
            if self.pending[id] then
                self.pending[id] = "abandoned"
            end
            return nil, a
        elseif got == id then
            if a.err then
                return nil, a.err
            end
            return a.result, nil
        elseif got then
            self.ready[got] = a
            self.ready_order[#self.ready_order + 1] = got
        end
    end
end

-- Sends method(...) and waits for its answer: result or nil, err.
function Client:request(method, ...)
    local id, err = self:send(method, ...)
    if not id then
        return nil, err
    end
    return wait(self, id)
end

local function check_key(key, fn)
    if type(key) ~= "string" then
        error("moor.client: " .. fn .. ": key must be a string, got " .. type(key), 3)
    end
end

-- opts as sent: a map, ctx as bin.  nil stays nil.
local function wire_opts(opts, fn)
    if opts == nil then
        return nil
    end
    if type(opts) ~= "table" then
        error("moor.client: " .. fn .. ": opts must be a table, got " .. type(opts), 3)
    end
    local out = mp.map()
    for k, v in pairs(opts) do
        out[k] = v
    end
    if type(out.ctx) == "string" then
        out.ctx = mp.bin(out.ctx)
    end
    return out
end

local function kv_params(key, opts)
    if opts == nil then
        return key
    end
    return key, opts
end

-- get(key, opts{space, r, timeout_ms, receipt}) -> {values = {...}, ctx =
-- string, expires_ms = number when a value returned expires}, nil (missing
-- key), or nil, err.  With receipt = true the answer
-- also holds receipt = {{node = id, status = "found"|"notfound"|"timeout"|
-- "down"|"error", fallback_for = id or nil}, ...}, and a missing key gives
-- {values = {}, receipt = ...} instead of nil.
function Client:get(key, opts)
    check_key(key, "get")
    return self:request("get", kv_params(key, wire_opts(opts, "get")))
end

-- put(key, value, opts{space, ctx, w, timeout_ms, receipt, ttl_ms}) -> {ctx = string}
-- (with receipt = true: and receipt, statuses "ok", "timeout", "down",
-- "error") or nil, err.
function Client:put(key, value, opts)
    check_key(key, "put")
    local o = wire_opts(opts, "put")
    if o == nil then
        return self:request("put", key, value)
    end
    return self:request("put", key, value, o)
end

-- del(key, opts{space, ctx, w, timeout_ms, receipt}) -> true (with receipt =
-- true: {receipt = {...}}) or nil, err.
function Client:del(key, opts)
    check_key(key, "del")
    return self:request("del", kv_params(key, wire_opts(opts, "del")))
end

-- where(key, opts{space}) -> {replicas = {ids in preference order},
-- fallbacks = {ids standing in for replicas that are down}} or nil, err.
function Client:where(key, opts)
    check_key(key, "where")
    return self:request("where", kv_params(key, wire_opts(opts, "where")))
end

-- scan(opts{space, prefix, limit, cursor, values, r, timeout_ms}) -> one
-- page of the keyspace's keys: {keys = {...}, values = {...} (values =
-- true: each as get answers it), cursor = string or nil (nil: the scan is
-- done)}, or nil, err.  Pass the cursor back for the next page.  Keys come
-- in ring order, not key order; a page may be short or even empty with a
-- cursor: go on until the cursor is nil (README "Scanning keys").
function Client:scan(opts)
    local o = wire_opts(opts or {}, "scan")
    if type(o.cursor) == "string" then
        o.cursor = mp.bin(o.cursor)
    end
    return self:request("scan", o)
end

-- scan_all(opts) -> an iterator over every key of the scan, page by page
-- (opts as scan's; limit is the page size):
--   for key, value in c:scan_all({space = "s", values = true}) do ... end
-- value is nil unless opts.values.  A page that fails raises
-- "moor.client: scan: CODE: message" (an iterator cannot return nil, err).
function Client:scan_all(opts)
    local o = {}
    for k, v in pairs(opts or {}) do
        o[k] = v
    end
    local page, i, done = nil, 0, false
    return function()
        while true do
            if page and i < #page.keys then
                i = i + 1
                return page.keys[i], page.values and page.values[i]
            end
            if done then
                return nil
            end
            local err
            page, err = self:scan(o)
            if not page then
                error("moor.client: scan: " .. tostring(err), 2)
            end
            i = 0
            o.cursor = page.cursor
            done = page.cursor == nil
        end
    end
end

-- call(name, ...) -> what the handler returned, or nil, err.
function Client:call(name, ...)
    if type(name) ~= "string" then
        error("moor.client: call: handler name must be a string, got " .. type(name), 2)
    end
    return self:request("call", name, ...)
end

function Client:ping()
    return self:request("ping")
end

function Client:info()
    return self:request("info")
end

function Client:auth(token)
    if type(token) ~= "string" then
        error("moor.client: auth: token must be a string, got " .. type(token), 2)
    end
    return self:request("auth", token)
end

-- Requests sent and not yet answered.
function Client:inflight()
    local n = 0
    for _, state in pairs(self.pending) do
        if state == true then
            n = n + 1
        end
    end
    return n + #self.ready_order
end

return M
