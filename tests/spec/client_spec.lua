-- Specs for lua/moor/client.lua.  Unit level: the client talks to a fake
-- transport that runs a small in-memory node (get/put/del/call/ping/info/
-- auth with ctx-driven siblings) and can answer out of order, in 1-byte
-- pieces, with errors, garbage, late or never.
--
-- With MOOR_ADDR=host:port (and MOOR_TOKEN if the node has auth_token) the
-- last block also runs against a real moord over LuaSocket; without it that
-- block is reported as pending.

local mp = require("moor.msgpack")
local client = require("moor.client")

-- Fake node behind a fake transport ---------------------------------------------

local function new_fake(opts)
    opts = opts or {}
    local f = {
        requests = {},   -- decoded requests, in order
        nparams = {},    -- their param counts (nils included)
        raw = {},        -- raw request frames
        out = {},        -- byte chunks waiting to be received
        held = {},       -- encoded answers held back (f.hold = true)
        store = {},      -- key -> {sibs = {{v, dot}}, }
        dot = 0,
        token = opts.token,
        authed = opts.token == nil,
        closed = false,
        chunk = opts.chunk, -- split answers into pieces of this size
    }
    local reader = mp.reader()

    local function ctx_of(r)
        local d = {}
        for _, s in ipairs(r.sibs) do
            d[#d + 1] = s.dot
        end
        return table.concat(d, ",") .. "\255" -- not UTF-8: must travel as bin
    end

    local methods = {}
    function methods.auth(p)
        if p[1] == f.token then
            f.authed = true
            return true
        end
        return nil, { "NOAUTH", "bad token" }
    end
    function methods.ping()
        return mp.map({ pong = true })
    end
    function methods.info()
        return mp.map({ node = "fake", version = "0" })
    end
    function methods.get(p)
        local r = f.store[p[1]]
        if not r or #r.sibs == 0 then
            return nil
        end
        local vals = {}
        for i, s in ipairs(r.sibs) do
            vals[i] = s.v
        end
        return mp.map({ values = vals, ctx = mp.bin(ctx_of(r)) })
    end
    local function write(p, v, o, del)
        local r = f.store[p[1]] or { sibs = {} }
        f.store[p[1]] = r
        local seen = {}
        if o and o.ctx then
            for d in o.ctx:gmatch("%d+") do
                seen[tonumber(d)] = true
            end
        end
        local keep = {}
        for _, s in ipairs(r.sibs) do
            if not seen[s.dot] then
                keep[#keep + 1] = s
            end
        end
        f.dot = f.dot + 1
        if not del then
            keep[#keep + 1] = { v = v, dot = f.dot }
        end
        r.sibs = keep
        return ctx_of(r)
    end
    function methods.put(p)
        return mp.map({ ctx = mp.bin(write(p, p[2], p[3])) })
    end
    function methods.del(p)
        write(p, nil, p[2], true)
        return true
    end
    -- scan: the live keys in sorted order, limit per page, the cursor the
    -- index to go on from (as bin: not UTF-8)
    function methods.scan(p)
        local o = p[1] or {}
        local keys = {}
        for k, r in pairs(f.store) do
            if #r.sibs > 0 then
                keys[#keys + 1] = k
            end
        end
        table.sort(keys)
        local from = 1
        if o.cursor then
            from = tonumber(o.cursor:match("^\255(%d+)$") or "")
            if not from then
                return nil, { "BAD_REQUEST", "malformed cursor" }
            end
        end
        local limit = o.limit or 100
        local page, vals = {}, {}
        for i = from, math.min(#keys, from + limit - 1) do
            page[#page + 1] = keys[i]
            vals[#vals + 1] = mp.map({ values = { f.store[keys[i]].sibs[1].v } })
        end
        local nxt = from + limit
        local res = mp.map({ keys = page })
        if o.values then
            res.values = vals
        end
        if nxt <= #keys then
            res.cursor = mp.bin("\255" .. nxt)
        end
        return res
    end
    function methods.call(p, n)
        if p[1] == "echo" then
            return mp.array({ unpack(p, 2, n) }, n - 1)
        elseif p[1] == "nothing" then
            return nil
        end
        return nil, { "NO_HANDLER", "no handler " .. tostring(p[1]) }
    end

    local function answer(req)
        local params = req[4]
        local n = 0
        for k in pairs(params) do
            if k > n then
                n = k
            end
        end
        local mt = getmetatable(params)
        n = mt and mt["msgpack.array"] or n
        f.nparams[#f.nparams + 1] = n
        local fn = methods[req[3]]
        local res, err
        if not f.authed and req[3] ~= "auth" then
            err = { "NOAUTH", "authenticate first" }
        elseif not fn then
            err = { "UNKNOWN_METHOD", "no method " .. tostring(req[3]) }
        else
            res, err = fn(params, n)
        end
        return mp.encode({ 1, req[2], err, res })
    end

    local function emit(bytes)
        if f.chunk then
            for i = 1, #bytes, f.chunk do
                f.out[#f.out + 1] = bytes:sub(i, i + f.chunk - 1)
            end
        else
            f.out[#f.out + 1] = bytes
        end
    end

    f.transport = {
        send = function(_, data, timeout)
            assert(type(timeout) == "number" and timeout > 0, "send without a timeout")
            if f.closed then
                return nil, "closed"
            end
            reader:feed(data)
            while true do
                local ok, req = reader:next()
                assert(ok ~= nil, req)
                if not ok then
                    break
                end
                f.requests[#f.requests + 1] = req
                if f.silent then
                    -- no answer at all
                elseif f.hold then
                    f.held[#f.held + 1] = answer(req)
                else
                    emit(answer(req))
                end
            end
            f.raw[#f.raw + 1] = data
            return true
        end,
        receive = function(_, timeout)
            assert(type(timeout) == "number", "receive without a timeout")
            local c = table.remove(f.out, 1)
            if c then
                return c
            end
            if f.closed then
                return nil, "closed"
            end
            return nil, "timeout"
        end,
        close = function()
            f.closed = true
            f.close_count = (f.close_count or 0) + 1
        end,
    }

    -- Releases held answers, last first.
    function f.release_reversed()
        for i = #f.held, 1, -1 do
            emit(f.held[i])
        end
        f.held = {}
        f.hold = false
    end

    return f
end

local function connect(f, opts)
    opts = opts or {}
    opts.transport = f.transport
    opts.timeout = opts.timeout or 1
    return client.connect("127.0.0.1:7700", opts)
end

describe("moor.client", function()
    it("parses addresses", function()
        assert.are.same({ "127.0.0.1", 7700 }, { client.parse_addr("127.0.0.1:7700") })
        assert.are.same({ "::1", 9 }, { client.parse_addr("[::1]:9") })
        assert.are.same({ "node-1.local", 65535 }, { client.parse_addr("node-1.local:65535") })
        for _, bad in ipairs({ "localhost", "h:0", "h:70000", ":7700", "h:x", "" }) do
            local h, err = client.parse_addr(bad)
            assert.is_nil(h)
            assert.is_truthy(err:find("expected host:port"), err)
        end
        local c, err = client.connect("nope")
        assert.is_nil(c)
        assert.is_truthy(err:find("^CONNECT: bad address"), err)
    end)

    it("reports a refused connection", function()
        -- port 1 on loopback: nothing listens there on these machines
        local c, err = client.connect("127.0.0.1:1", { timeout = 1 })
        assert.is_nil(c)
        assert.is_truthy(err:find("^CONNECT: cannot connect to 127.0.0.1:1"), err)
    end)

    it("puts, gets and deletes", function()
        local f = new_fake()
        local c = assert(connect(f))
        local w, err = c:put("k", { 1, "two", { three = 3 } })
        assert.is_nil(err)
        assert.is_string(w.ctx)
        local r = assert(c:get("k"))
        assert.are.same({ { 1, "two", { three = 3 } } }, r.values)
        assert.are.equal(w.ctx, r.ctx)
        assert.is_true(c:del("k", { ctx = r.ctx }))
        local missing, merr = c:get("k")
        assert.is_nil(missing)
        assert.is_nil(merr)
    end)

    it("keeps siblings until a put with the ctx replaces them", function()
        local f = new_fake()
        local c = assert(connect(f))
        assert(c:put("s", "a"))
        assert(c:put("s", "b"))
        local r = assert(c:get("s"))
        assert.are.same({ "a", "b" }, r.values)
        assert(c:put("s", "c", { ctx = r.ctx }))
        assert.are.same({ "c" }, assert(c:get("s")).values)
    end)

    it("sends exactly the params the protocol table names", function()
        local f = new_fake()
        local c = assert(connect(f))
        c:get("k")
        c:get("k", {})
        c:put("k", nil)
        c:put("k", "v", { ctx = "abc", space = "s" })
        c:del("k")
        local req = f.requests
        assert.are.same({ 0, 0, "get", { "k" } }, req[1])
        assert.are.equal(2, #req[2][4])
        assert.is_true(mp.is_map(req[2][4][2]))      -- {} travels as a map
        assert.are.equal(2, getmetatable(req[3][4])["msgpack.array"]) -- [key, nil]
        assert.are.equal("abc", req[4][4][3].ctx)
        assert.are.equal("s", req[4][4][3].space)
        -- the ctx went out as bin (c4 03 "abc"), not as str
        assert.is_truthy(f.raw[4]:find("\196\003abc", 1, true))
        assert.are.same({ 0, 4, "del", { "k" } }, req[5])
    end)

    it("turns error replies into nil, \"CODE: message\"", function()
        local f = new_fake()
        local c = assert(connect(f))
        local r, err = c:call("missing", 1)
        assert.is_nil(r)
        assert.are.equal("NO_HANDLER: no handler missing", err)
        r, err = c:request("frobnicate")
        assert.is_nil(r)
        assert.are.equal("UNKNOWN_METHOD: no method frobnicate", err)
        -- the connection is fine afterwards
        assert.are.same({ pong = true }, (c:ping()))
    end)

    it("passes call arguments as given, nils included", function()
        local f = new_fake()
        local c = assert(connect(f))
        local r = assert(c:call("echo", "a", nil, 3))
        assert.are.equal("a", r[1])
        assert.is_nil(r[2])
        assert.are.equal(3, r[3])
        assert.are.equal(4, f.nparams[1]) -- name + 3 args
        local none, err = c:call("nothing")
        assert.is_nil(none)
        assert.is_nil(err)
    end)

    it("authenticates when given a token", function()
        local f = new_fake({ token = "s3cret" })
        local c = assert(connect(f, { token = "s3cret" }))
        assert.are.equal("auth", f.requests[1][3])
        assert.are.same({ node = "fake", version = "0" }, (c:info()))

        local g = new_fake({ token = "s3cret" })
        local c2, err = connect(g, { token = "wrong" })
        assert.is_nil(c2)
        assert.are.equal("NOAUTH: bad token", err)
        assert.are.equal(1, g.close_count)

        local h = new_fake({ token = "s3cret" })
        local c3 = assert(connect(h))
        local r, nerr = c3:get("k")
        assert.is_nil(r)
        assert.are.equal("NOAUTH: authenticate first", nerr)
    end)

    it("reassembles answers that arrive one byte at a time", function()
        local f = new_fake({ chunk = 1 })
        local c = assert(connect(f))
        local big = string.rep("xyz", 5000)
        assert(c:put("big", big))
        assert.are.equal(big, assert(c:get("big")).values[1])
    end)

    it("pipelines: answers come back by msgid in arrival order", function()
        local f = new_fake()
        local c = assert(connect(f))
        f.hold = true
        local ids = {}
        for i = 1, 5 do
            ids[i] = assert(c:send("put", "p" .. i, i))
        end
        assert.are.equal(5, c:inflight())
        assert.are.equal(0, #f.requests) -- queued, not yet written
        assert(c:flush())
        assert.are.equal(5, #f.requests)
        f.release_reversed()
        for i = 5, 1, -1 do
            local id, res, err = c:recv()
            assert.are.equal(ids[i], id)
            assert.is_nil(err)
            assert.is_string(res.ctx)
        end
        assert.are.equal(0, c:inflight())
        local id, res, err = c:recv()
        assert.is_nil(id)
        assert.is_nil(res)
        assert.is_truthy(err:find("nothing in flight"), err)
    end)

    it("keeps pipelined answers that a blocking call reads past", function()
        local f = new_fake()
        local c = assert(connect(f))
        f.hold = true
        local a = assert(c:send("ping"))
        local b = assert(c:send("call", "missing"))
        assert(c:flush())
        f.release_reversed() -- b's answer first, then a's
        assert(c:put("x", 1)) -- blocking call reads past both
        local id1, r1, e1 = c:recv()
        local id2, r2, e2 = c:recv()
        assert.are.same({ b, nil, "NO_HANDLER: no handler missing" }, { id1, r1, e1 })
        assert.are.same({ a, { pong = true } }, { id2, r2 })
        assert.is_nil(e2)
    end)

    it("times out, drops the late answer, and stays usable", function()
        local f = new_fake()
        local c = assert(connect(f, { timeout = 0.05 }))
        f.hold = true
        local r, err = c:get("k")
        assert.is_nil(r)
        assert.is_truthy(err:find("^TIMEOUT: no answer from 127.0.0.1:7700"), err)
        f.release_reversed() -- the late answer arrives now
        local w = assert(c:put("k", "v"))
        assert.is_string(w.ctx)
        assert.are.same({ "v" }, assert(c:get("k")).values)
        assert.are.equal(0, c:inflight())
    end)

    it("breaks on a closed connection and says so every time", function()
        local f = new_fake()
        local c = assert(connect(f))
        f.silent = true
        f.closed = true
        local r, err = c:get("k")
        assert.is_nil(r)
        assert.is_truthy(err:find("^CLOSED"), err)
        local r2, err2 = c:ping()
        assert.is_nil(r2)
        assert.are.equal(err, err2)
    end)

    it("breaks on garbage from the node", function()
        local f = new_fake()
        local c = assert(connect(f))
        f.silent = true
        f.out[1] = "\193\1\2"
        local r, err = c:get("k")
        assert.is_nil(r)
        assert.is_truthy(err:find("^PROTOCOL: bad MessagePack from 127.0.0.1:7700: invalid byte 0xc1"), err)
        assert.are.equal(1, f.close_count)
        assert.are.equal(err, select(2, c:ping()))
    end)

    it("breaks on frames that are not answers to anything", function()
        local cases = {
            { mp.encode("hello"), "not an array" },
            { mp.encode({ 1, 999, nil, true }), "msgid 999" },
            { mp.encode({ 0, 0, "get", {} }), "type 0" },
        }
        for _, case in ipairs(cases) do
            local f = new_fake()
            local c = assert(connect(f))
            f.silent = true
            f.out[1] = case[1]
            local r, err = c:ping()
            assert.is_nil(r)
            assert.is_truthy(err:find("^PROTOCOL") and err:find(case[2], 1, true), err)
        end
    end)

    it("ignores notifications", function()
        local f = new_fake()
        local c = assert(connect(f))
        f.out[1] = mp.encode({ 2, "event", { 1 } })
        assert.are.same({ pong = true }, (c:ping()))
    end)

    it("refuses an answer over max_frame", function()
        local f = new_fake()
        local c = assert(connect(f, { max_frame = 1000 }))
        assert(c:put("k", string.rep("a", 5000)))
        local r, err = c:get("k")
        assert.is_nil(r)
        assert.is_truthy(err:find("larger than 1000 bytes"), err)
    end)

    it("returns ENCODE for values it cannot send, and keeps going", function()
        local f = new_fake()
        local c = assert(connect(f))
        local r, err = c:put("k", print)
        assert.is_nil(r)
        assert.is_truthy(err:find("^ENCODE: msgpack.encode: cannot encode a function"), err)
        assert(c:put("k", "fine"))
    end)

    it("raises on misuse", function()
        local f = new_fake()
        local c = assert(connect(f))
        assert.has_error(function() c:get(5) end, "moor.client: get: key must be a string, got number")
        assert.has_error(function() c:put("k", 1, "ctx") end, "moor.client: put: opts must be a table, got string")
        assert.has_error(function() c:call(nil) end, "moor.client: call: handler name must be a string, got nil")
        assert.has_error(function() c:send(1) end, "moor.client: method must be a string")
    end)

    it("wraps msgids around at 2^32", function()
        local f = new_fake()
        local c = assert(connect(f))
        c.next_id = 4294967295
        assert.are.equal(4294967295, (c:send("ping")))
        assert.are.equal(0, (c:send("ping")))
        assert.are.equal(4294967295, (c:recv()))
        assert.are.equal(0, (c:recv()))
    end)

    it("sends binary keys and values as bin and gets them back", function()
        local f = new_fake()
        local c = assert(connect(f))
        local key, val = "\0\255key", "\1\2\255"
        assert(c:put(key, val))
        assert.are.same({ val }, assert(c:get(key)).values)
        assert.is_truthy(f.raw[1]:find("\196\005\0\255key", 1, true))
    end)

    it("scans page by page, the cursor sent back as bin", function()
        local f = new_fake()
        local c = assert(connect(f))
        for i = 1, 25 do
            assert(c:put(string.format("k%02d", i), i))
        end
        local page = assert(c:scan({ limit = 10 }))
        assert.are.equal(10, #page.keys)
        assert.are.equal("k01", page.keys[1])
        assert.is_nil(page.values)
        local nxt = assert(c:scan({ limit = 10, cursor = page.cursor, values = true }))
        assert.are.equal("k11", nxt.keys[1])
        assert.are.same({ 11 }, nxt.values[1].values)
        -- the cursor travels as bin (0xc4), not as a str
        assert.is_truthy(f.raw[#f.raw]:find("\196\003\25511", 1, true))
        local seen, vals = {}, 0
        for key, value in c:scan_all({ limit = 7, values = true }) do
            seen[#seen + 1] = key
            vals = vals + value.values[1]
        end
        assert.are.equal(25, #seen)
        assert.are.equal(325, vals)
        local r, err = c:scan({ cursor = "garbage" })
        assert.is_nil(r)
        assert.are.equal("BAD_REQUEST: malformed cursor", err)
        assert.has_error(function()
            for _ in c:scan_all({ cursor = "garbage" }) do
            end
        end, "moor.client: scan: BAD_REQUEST: malformed cursor")
    end)

    it("closes the transport once", function()
        local f = new_fake()
        local c = assert(connect(f))
        c:close()
        c:close()
        assert.are.equal(1, f.close_count)
        local r, err = c:get("k")
        assert.is_nil(r)
        assert.are.equal("CLOSED: the client was closed", err)
    end)
end)

-- Against a real node -------------------------------------------------------------

local addr = os.getenv("MOOR_ADDR")
local live = addr and describe or pending

live("moor.client against a node at MOOR_ADDR", function()
    local c
    local prefix = "client_spec:" .. tostring(os.time()) .. ":" .. tostring(math.random(1, 1e9)) .. ":"

    before_each(function()
        local err
        c, err = client.connect(addr, { timeout = 5, token = os.getenv("MOOR_TOKEN") })
        assert(c, err)
    end)
    after_each(function()
        c:close()
    end)

    it("pings and reports info", function()
        assert.is_not_nil((c:ping()))
        assert.are.equal("table", type((c:info())))
    end)

    it("round-trips values byte for byte", function()
        local values = { "plain", "\0\255bin", 42, -7, 2 ^ 40, 1.5, true, false,
            { 1, 2, 3 }, { a = { b = { "c" } } }, {}, mp.map(), 18446744073709551615ULL,
            mp.ext(5, "xy") }
        for i, v in ipairs(values) do
            local k = prefix .. "v" .. i
            assert(c:put(k, v))
            local r = assert(c:get(k))
            assert.are.equal(1, #r.values)
            assert.are.equal(mp.encode(v), mp.encode(r.values[1]), "value " .. i)
        end
    end)

    it("keeps siblings and collapses them with the ctx", function()
        local k = prefix .. "sib"
        assert(c:put(k, "a"))
        assert(c:put(k, "b"))
        local r = assert(c:get(k))
        table.sort(r.values)
        assert.are.same({ "a", "b" }, r.values)
        assert(c:put(k, "c", { ctx = r.ctx }))
        r = assert(c:get(k))
        assert.are.same({ "c" }, r.values)
        assert.is_true(c:del(k, { ctx = r.ctx }))
        local gone, err = c:get(k)
        assert.is_nil(gone)
        assert.is_nil(err)
    end)

    it("scans the keys it wrote, page by page", function()
        for i = 1, 30 do
            assert(c:put(prefix .. "scan" .. i, i))
        end
        local seen = {}
        for key, value in c:scan_all({ prefix = prefix .. "scan", limit = 7, values = true }) do
            assert.is_nil(seen[key])
            seen[key] = value.values[1]
        end
        for i = 1, 30 do
            assert.are.equal(i, seen[prefix .. "scan" .. i])
        end
    end)

    it("pipelines 100 requests", function()
        local ids = {}
        for i = 1, 100 do
            ids[assert(c:send("put", prefix .. "p" .. i, i))] = true
        end
        for _ = 1, 100 do
            local id, res, err = c:recv()
            assert.is_nil(err)
            assert.is_true(ids[id])
            ids[id] = nil
            assert.is_string(res.ctx)
        end
        assert.is_nil(next(ids))
    end)

    it("calls incr", function()
        local k = prefix .. "ctr"
        assert.are.equal(5, assert(c:call("incr", k, 5)))
        assert.are.equal(6, assert(c:call("incr", k)))
    end)
end)
