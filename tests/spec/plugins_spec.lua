-- Specs for plugins/: resolvers.lww, resolvers.set_union, handlers.incr,
-- handlers.cas.  Handlers run against a fake `moor` global: an in-memory
-- store with Dynamo-style siblings (every write gets a dot; a ctx names the
-- dots its reader saw; a write with a ctx replaces exactly those), and
-- every get/put/del yields once when called inside a coroutine, like the
-- node's cosocket calls, so interleaved handlers can be driven by hand.

local lww = require("resolvers.lww")
local set_union = require("resolvers.set_union")
local incr = require("handlers.incr")
local cas = require("handlers.cas")

local seed = tonumber(os.getenv("MOOR_SEED") or "") or 20240601

-- Fake node ------------------------------------------------------------------

local function new_fake()
    local f = { data = {}, dot = 0, now_ms = 1000, yields = 0, log = {}, fail = {}, seen_opts = {} }

    local function space_of(opts)
        return opts and opts.space or "default"
    end

    local function rec(key, opts)
        local k = space_of(opts) .. "\0" .. key
        f.data[k] = f.data[k] or { sibs = {} }
        return f.data[k]
    end

    local function ctx_of(r)
        local dots = {}
        for _, s in ipairs(r.sibs) do
            dots[#dots + 1] = s.dot
        end
        table.sort(dots)
        return #dots > 0 and ("ctx:" .. table.concat(dots, ",")) or nil
    end

    local function wait()
        if coroutine.running() then
            f.yields = f.yields + 1
            coroutine.yield()
        end
    end

    local function check(op, key, opts)
        f.seen_opts[#f.seen_opts + 1] = { op = op, opts = opts }
        assert(type(key) == "string", "fake moor: key must be a string")
        assert(opts == nil or (type(opts) == "table" and next(opts) ~= nil),
            "fake moor: opts must be nil or a non-empty map")
        local e = f.fail[op]
        f.fail[op] = nil
        return e
    end

    local function write(key, value, opts, tombstone)
        local r = rec(key, opts)
        local drop = {}
        if opts and opts.ctx then
            assert(type(opts.ctx) == "string", "fake moor: ctx must be a string")
            for d in opts.ctx:gmatch("%d+") do
                drop[tonumber(d)] = true
            end
        end
        local keep = {}
        for _, s in ipairs(r.sibs) do
            if not drop[s.dot] then
                keep[#keep + 1] = s
            end
        end
        f.dot = f.dot + 1
        f.now_ms = f.now_ms + 1
        keep[#keep + 1] = { dot = f.dot, value = value, ts = f.now_ms, tombstone = tombstone }
        r.sibs = keep
        return ctx_of(r)
    end

    f.moor = {
        get = function(key, opts)
            local e = check("get", key, opts)
            wait()
            if e then
                return nil, e
            end
            local r = rec(key, opts)
            local values = {}
            for _, s in ipairs(r.sibs) do
                if not s.tombstone then
                    values[#values + 1] = s.value
                end
            end
            if #values == 0 then
                return nil, nil
            end
            return { values = values, ctx = ctx_of(r) }
        end,
        put = function(key, value, opts)
            local e = check("put", key, opts)
            wait()
            if e then
                return nil, e
            end
            return { ctx = write(key, value, opts, false) }
        end,
        del = function(key, opts)
            local e = check("del", key, opts)
            wait()
            if e then
                return nil, e
            end
            write(key, nil, opts, true)
            return true
        end,
        now = function()
            return f.now_ms
        end,
        log = function(level, msg)
            f.log[#f.log + 1] = level .. ": " .. msg
        end,
    }

    -- Live values of key, in write order.
    function f.values(key, space)
        local r = f.data[(space or "default") .. "\0" .. key]
        local out = {}
        for _, s in ipairs(r and r.sibs or {}) do
            if not s.tombstone then
                out[#out + 1] = s.value
            end
        end
        return out
    end

    return f
end

-- Runs fn(...) as a handler coroutine to completion; returns true, results
-- or false, error message.  Bounded: a handler that keeps yielding fails.
local function run(fn, ...)
    local co = coroutine.create(fn)
    local res = { coroutine.resume(co, ...) }
    for _ = 1, 1000 do
        if coroutine.status(co) == "dead" then
            return unpack(res)
        end
        res = { coroutine.resume(co) }
    end
    error("handler still running after 1000 resumes")
end

-- Resumes several handler coroutines round-robin until all are done.
local function run_interleaved(calls)
    local cos, results = {}, {}
    for i, c in ipairs(calls) do
        cos[i] = coroutine.create(c[1])
        results[i] = { coroutine.resume(cos[i], unpack(c, 2)) }
    end
    for _ = 1, 1000 do
        local alive = false
        for i, co in ipairs(cos) do
            if coroutine.status(co) ~= "dead" then
                alive = true
                results[i] = { coroutine.resume(co) }
            end
        end
        if not alive then
            return results
        end
    end
    error("handlers still running after 1000 rounds")
end

-- Helpers --------------------------------------------------------------------

local function shuffled(t, rnd)
    local c = {}
    for i, v in ipairs(t) do
        c[i] = v
    end
    for i = #c, 2, -1 do
        local j = rnd(1, i)
        c[i], c[j] = c[j], c[i]
    end
    return c
end

-- Order-sensitive rendering of a value, for comparing resolver outputs.
local function show(v)
    if type(v) ~= "table" then
        if type(v) == "string" then
            return string.format("%q", v)
        end
        return tostring(v)
    end
    local keys = {}
    for k in pairs(v) do
        keys[#keys + 1] = k
    end
    table.sort(keys, function(a, b)
        return show(a) < show(b)
    end)
    local parts = {}
    for _, k in ipairs(keys) do
        parts[#parts + 1] = show(k) .. "=" .. show(v[k])
    end
    return "{" .. table.concat(parts, ",") .. "}"
end

local function sib(value, ts, tombstone)
    return { value = value, ts = ts, tombstone = tombstone or false }
end

-- resolvers.lww --------------------------------------------------------------

describe("resolvers.lww", function()
    it("gives nil for no siblings", function()
        assert.is_nil(lww({}))
    end)

    it("keeps a single live sibling", function()
        assert.are.same({ a = 1 }, lww({ sib({ a = 1 }, 5) }))
    end)

    it("picks the highest ts in any order", function()
        local sibs = { sib("old", 1), sib("newest", 30), sib("mid", 20) }
        local rnd = math.random
        math.randomseed(seed)
        for _ = 1, 20 do
            assert.are.equal("newest", lww(shuffled(sibs, rnd)))
        end
    end)

    it("resolves to nil when a tombstone is newest", function()
        assert.is_nil(lww({ sib("v", 10), sib(nil, 11, true) }))
        assert.are.equal("v", lww({ sib("v", 12), sib(nil, 11, true) }))
    end)

    it("lets a delete win a tie", function()
        assert.is_nil(lww({ sib("v", 10), sib(nil, 10, true) }))
        assert.is_nil(lww({ sib(nil, 10, true), sib("v", 10) }))
    end)

    it("breaks live ties the same way in any order", function()
        local sibs = { sib("b", 7), sib({ 1, 2 }, 7), sib(42, 7), sib("a", 7), sib(true, 3) }
        local first = show(lww(sibs))
        math.randomseed(seed)
        for _ = 1, 30 do
            assert.are.equal(first, show(lww(shuffled(sibs, math.random))))
        end
        -- structurally equal tables tie-break equally whatever their key order
        local x, y = { a = 1, b = 2 }, { b = 2, a = 1 }
        assert.are.equal(show(lww({ sib(x, 1), sib("z", 1) })), show(lww({ sib("z", 1), sib(y, 1) })))
    end)

    it("matches a reference on random sibling sets", function()
        math.randomseed(seed + 1)
        for _ = 1, 300 do
            local n = math.random(1, 8)
            local sibs = {}
            local maxts = -1
            for i = 1, n do
                local ts = math.random(1, 1000) * 1000 + i -- distinct timestamps
                local tomb = math.random() < 0.3
                sibs[i] = sib(not tomb and ("v" .. i) or nil, ts, tomb)
                if ts > maxts then
                    maxts = ts
                end
            end
            local want
            for _, s in ipairs(sibs) do
                if s.ts == maxts then
                    want = s.value
                end
            end
            assert.are.equal(want, lww(shuffled(sibs, math.random)))
        end
    end)

    it("treats a missing ts as 0 and rejects garbage", function()
        assert.are.equal("has ts", lww({ { value = "no ts" }, sib("has ts", 1) }))
        assert.has_error(function() lww("nope") end, "lww: expected a list of siblings, got string")
        assert.has_error(function() lww({ 5 }) end, "lww: sibling is a number, expected a table")
    end)
end)

-- resolvers.set_union --------------------------------------------------------

describe("resolvers.set_union", function()
    it("gives nil when nothing is live", function()
        assert.is_nil(set_union({}))
        assert.is_nil(set_union({ sib(nil, 1, true), sib(nil, 2, true) }))
    end)

    it("unions and sorts", function()
        assert.are.same({ 1, 2, 3, 4 }, set_union({ sib({ 3, 1 }, 1), sib({ 2, 3, 4 }, 2) }))
        assert.are.same({ "apple", "kiwi", "pear" },
            set_union({ sib({ "pear", "apple" }, 1), sib({ "kiwi", "apple" }, 2) }))
    end)

    it("orders booleans, numbers, strings, then tables", function()
        local out = set_union({ sib({ "b", { x = 1 }, 2, true }, 1), sib({ false, -1.5, "a", { 0 } }, 2) })
        assert.are.equal('{1=false,2=true,3=-1.5,4=2,5="a",6="b",7={1=0},8={"x"=1}}', show(out))
    end)

    it("treats a non-array value as a one-element set", function()
        assert.are.same({ "x", "y" }, set_union({ sib("x", 1), sib({ "y" }, 2) }))
        assert.are.same({ 7, { a = 1 } }, set_union({ sib({ a = 1 }, 1), sib(7, 2) }))
    end)

    it("honours the codec's map and bin markers", function()
        local map_1n = setmetatable({ "x" }, { __name = "moor.map" }) -- a map {1: "x"}
        local empty_map = setmetatable({}, { __name = "moor.map" })
        local out = set_union({ sib(map_1n, 1), sib(empty_map, 2) })
        assert.are.equal(2, #out)
        assert.are.equal(empty_map, out[1]) -- tables sort by canonical form: "t0{}" first
        assert.are.equal(map_1n, out[2])
        local arr = setmetatable({ "a", nil, "b" }, { __name = "moor.array" })
        assert.are.same({ "a", "b" }, set_union({ sib(arr, 1) }))
        local bin = setmetatable({ "raw" }, { __name = "moor.bin" })
        assert.are.same({ "raw" }, set_union({ sib({ bin, "raw" }, 1) }))
    end)

    it("dedups tables by structure", function()
        local out = set_union({
            sib({ { 1, 2 }, { k = "v", n = 1 } }, 1),
            sib({ { 1, 2 }, { n = 1, k = "v" } }, 2),
        })
        assert.are.equal(2, #out)
    end)

    it("lets an add win over a concurrent delete", function()
        assert.are.same({ "milk" }, set_union({ sib(nil, 5, true), sib({ "milk" }, 3) }))
    end)

    it("gives an empty array for live but empty sets", function()
        assert.are.same({}, set_union({ sib({}, 1), sib(nil, 2, true) }))
    end)

    it("skips nil elements of holey arrays and live nil values", function()
        local holey = { 1, nil, 3 }
        assert.are.same({ 1, 3 }, set_union({ sib(holey, 1), sib(nil, 2) }))
    end)

    it("copes with NaN, -0.0 and 64-bit cdata", function()
        local nan = 0 / 0
        local out = set_union({ sib({ nan, 0, 2 }, 1), sib({ -0.0, nan, 9007199254740993ULL }, 2) })
        assert.are.equal(4, #out)
        assert.are.equal(0, out[1])
        assert.are.equal(1 / 0, 1 / out[1]) -- -0.0 folded into 0
        assert.are.equal(2, out[2])
        assert.is_true(out[3] == 9007199254740993ULL)
        assert.is_true(out[4] ~= out[4])
    end)

    local function deep_copy(t)
        if type(t) ~= "table" then
            return t
        end
        local c = {}
        for k, v in pairs(t) do
            c[k] = deep_copy(v)
        end
        return c
    end

    -- Random sets of small values drawn from a pool with duplicates across
    -- types and nested tables.
    local function random_sibs(rnd)
        local pool = { 1, 2, 3, 2.5, -7, "a", "b", "ab", "", true, false, { 1 }, { 1, 2 }, { k = "v" },
            { k = { 1, { z = false } } } }
        local sibs = {}
        for i = 1, rnd(1, 6) do
            if rnd(1, 5) == 1 then
                sibs[i] = sib(nil, i, true)
            elseif rnd(1, 6) == 1 then
                sibs[i] = sib(pool[rnd(1, #pool)], i) -- a non-array value
            else
                local v = {}
                for j = 1, rnd(0, 5) do
                    local e = pool[rnd(1, #pool)]
                    if type(e) == "table" then
                        e = deep_copy(e) -- structurally equal, new identity
                    end
                    v[j] = e
                end
                sibs[i] = sib(v, i)
            end
        end
        return sibs
    end

    it("is commutative, idempotent and associative on random sibling sets", function()
        math.randomseed(seed + 2)
        local rnd = math.random
        for _ = 1, 300 do
            local sibs = random_sibs(rnd)
            local r = set_union(sibs)
            local want = show(r)
            -- any order
            assert.are.equal(want, show(set_union(shuffled(sibs, rnd))))
            -- duplicated input
            local twice = {}
            for _, s in ipairs(sibs) do
                twice[#twice + 1] = s
                twice[#twice + 1] = s
            end
            assert.are.equal(want, show(set_union(twice)))
            if r ~= nil then
                -- resolving the result again changes nothing
                assert.are.equal(want, show(set_union({ sib(r, 99) })))
                -- merging partial merges equals merging everything
                local cut = rnd(1, #sibs)
                local a, b = {}, {}
                for i, s in ipairs(sibs) do
                    if i <= cut then
                        a[#a + 1] = s
                    else
                        b[#b + 1] = s
                    end
                end
                local ra, rb = set_union(a), set_union(b)
                local parts = {}
                if ra ~= nil then
                    parts[#parts + 1] = sib(ra, 1)
                end
                if rb ~= nil then
                    parts[#parts + 1] = sib(rb, 2)
                end
                assert.are.equal(want, show(set_union(parts)))
            end
        end
    end)

    it("rejects garbage with a message", function()
        assert.has_error(function() set_union(nil) end, "set_union: expected a list of siblings, got nil")
        assert.has_error(function() set_union({ "x" }) end, "set_union: sibling is a string, expected a table")
    end)
end)

-- handlers.incr --------------------------------------------------------------

describe("handlers.incr", function()
    local f
    before_each(function()
        f = new_fake()
        _G.moor = f.moor
    end)
    after_each(function()
        _G.moor = nil
    end)

    it("starts a missing key from 0, by 1 by default", function()
        assert.are.same({ true, 1 }, { run(incr, "c") })
        assert.are.same({ true, 6 }, { run(incr, "c", 5) })
        assert.are.same({ 6 }, f.values("c"))
        assert.is_true(f.yields >= 4) -- each get and put yielded
    end)

    it("adds to a numeric value, negatives and floats included", function()
        f.moor.put("n", 10)
        assert.are.same({ true, 7 }, { run(incr, "n", -3) })
        assert.are.same({ true, 7.5 }, { run(incr, "n", 0.5) })
        assert.are.same({ 7.5 }, f.values("n"))
    end)

    it("takes the max numeric sibling and collapses the siblings", function()
        f.moor.put("s", 3)
        f.moor.put("s", 7) -- no ctx: a sibling
        f.moor.put("s", "junk")
        assert.are.same({ 3, 7, "junk" }, f.values("s"))
        assert.are.same({ true, 8 }, { run(incr, "s") })
        assert.are.same({ 8 }, f.values("s"))
    end)

    it("refuses a non-numeric value", function()
        f.moor.put("t", "hello")
        local ok, err = run(incr, "t")
        assert.is_false(ok)
        assert.are.equal("incr: value at key is not a number", err)
        f.moor.put("u", { 1 })
        ok, err = run(incr, "u", 2)
        assert.is_false(ok)
        assert.are.equal("incr: value at key is not a number", err)
        assert.are.same({ "hello" }, f.values("t")) -- nothing written
    end)

    it("refuses a non-numeric by and non-map opts", function()
        local ok, err = run(incr, "k", "2")
        assert.is_false(ok)
        assert.are.equal("incr: by must be a number, got string", err)
        ok, err = run(incr, "k", 1, "fast")
        assert.is_false(ok)
        assert.are.equal("incr: opts must be a map, got string", err)
    end)

    it("continues from a deleted key as 0", function()
        f.moor.put("d", 5)
        local r = f.moor.get("d")
        f.moor.del("d", { ctx = r.ctx })
        assert.are.same({ true, 2 }, { run(incr, "d", 2) })
    end)

    it("works on 64-bit cdata counters", function()
        f.moor.put("big", 9007199254740993LL)
        local ok, n = run(incr, "big", 1)
        assert.is_true(ok, n)
        assert.is_true(n == 9007199254740994LL)
    end)

    it("sends space/r to the read and space/w/ctx to the write", function()
        f.moor.put("o", 1, { space = "s2" })
        assert.are.same({ true, 2 }, { run(incr, "o", 1, { space = "s2", r = 1, w = 1, junk = true }) })
        local got, put = f.seen_opts[2], f.seen_opts[3]
        assert.are.same({ space = "s2", r = 1 }, got.opts)
        assert.are.equal("put", put.op)
        assert.are.equal("s2", put.opts.space)
        assert.are.equal(1, put.opts.w)
        assert.is_string(put.opts.ctx)
        assert.is_nil(put.opts.r)
        assert.are.same({ 2 }, f.values("o", "s2"))
    end)

    it("passes no opts at all when there are none (no empty tables)", function()
        assert.is_true((run(incr, "fresh")))
        assert.is_nil(f.seen_opts[1].opts)
        assert.is_nil(f.seen_opts[2].opts)
    end)

    it("reports failed reads and writes", function()
        f.fail.get = "UNAVAILABLE: 1 of 2 replicas"
        local ok, err = run(incr, "x")
        assert.is_false(ok)
        assert.are.equal("incr: get failed: UNAVAILABLE: 1 of 2 replicas", err)
        f.fail.put = "TIMEOUT: w=2 not reached"
        ok, err = run(incr, "x")
        assert.is_false(ok)
        assert.are.equal("incr: put failed: TIMEOUT: w=2 not reached", err)
    end)

    it("leaves siblings when two run at once; the next takes the max", function()
        f.moor.put("race", 10)
        local res = run_interleaved({ { incr, "race", 1 }, { incr, "race", 5 } })
        assert.are.same({ true, 11 }, res[1])
        assert.are.same({ true, 15 }, res[2])
        local vals = f.values("race")
        table.sort(vals)
        assert.are.same({ 11, 15 }, vals)
        assert.are.same({ true, 16 }, { run(incr, "race") })
        assert.are.same({ 16 }, f.values("race"))
    end)
end)

-- handlers.cas ---------------------------------------------------------------

describe("handlers.cas", function()
    local f
    before_each(function()
        f = new_fake()
        _G.moor = f.moor
    end)
    after_each(function()
        _G.moor = nil
    end)

    it("creates a missing key when expected_ctx is nil", function()
        local ok, r = run(cas, "k", nil, "first")
        assert.is_true(ok, r)
        assert.is_true(r.ok)
        assert.is_string(r.ctx)
        assert.are.same({ "first" }, f.values("k"))
        assert.are.equal(r.ctx, f.moor.get("k").ctx)
    end)

    it("refuses to create a key that exists", function()
        f.moor.put("k", "there")
        local cur = f.moor.get("k")
        local ok, r = run(cas, "k", nil, "mine")
        assert.is_true(ok, r)
        assert.are.same({ ok = false, ctx = cur.ctx, values = { "there" } }, r)
        assert.are.same({ "there" }, f.values("k"))
    end)

    it("replaces the value when the ctx matches, collapsing siblings", function()
        f.moor.put("k", "a")
        f.moor.put("k", "b")
        local cur = f.moor.get("k")
        local ok, r = run(cas, "k", cur.ctx, "c")
        assert.is_true(ok, r)
        assert.is_true(r.ok)
        assert.are_not.equal(cur.ctx, r.ctx)
        assert.are.same({ "c" }, f.values("k"))
    end)

    it("fails on a stale ctx and returns what is there", function()
        local first = f.moor.put("k", "a")
        f.moor.put("k", "b", { ctx = first.ctx })
        local ok, r = run(cas, "k", first.ctx, "c")
        assert.is_true(ok, r)
        assert.is_false(r.ok)
        assert.are.same({ "b" }, r.values)
        assert.are.equal(f.moor.get("k").ctx, r.ctx)
        assert.are.same({ "b" }, f.values("k"))
    end)

    it("fails on a ctx for a key that is gone, with nothing in the answer", function()
        local ok, r = run(cas, "none", "ctx:1", "v")
        assert.is_true(ok, r)
        assert.are.same({ ok = false }, r)
        assert.are.same({}, f.values("none"))
    end)

    it("recreates a deleted key when expected_ctx is nil", function()
        local w = f.moor.put("k", "v")
        f.moor.del("k", { ctx = w.ctx })
        local ok, r = run(cas, "k", nil, "again")
        assert.is_true(ok, r)
        assert.is_true(r.ok)
        assert.are.same({ "again" }, f.values("k"))
    end)

    it("keeps a write that races in between as a sibling", function()
        local w = f.moor.put("k", "v0")
        local res = run_interleaved({
            { cas, "k", w.ctx, "from-cas" },
            { function() return f.moor.put("k", "from-other") end },
        })
        assert.is_true(res[1][1])
        local vals = f.values("k")
        table.sort(vals)
        assert.are.same({ "from-cas", "from-other" }, vals)
        -- a get shows the conflict, and a cas with the ctx read before it fails
        assert.are.equal(2, #f.moor.get("k").values)
        local ok, r = run(cas, "k", w.ctx, "later")
        assert.is_true(ok)
        assert.is_false(r.ok)
        assert.are.equal(2, #r.values)
    end)

    it("passes space to both calls", function()
        local ok, r = run(cas, "k", nil, 1, { space = "s", w = 1 })
        assert.is_true(ok, r)
        assert.are.same({ space = "s" }, f.seen_opts[1].opts)
        assert.are.equal("s", f.seen_opts[2].opts.space)
        assert.are.same({ 1 }, f.values("k", "s"))
    end)

    it("refuses bad arguments and reports failures", function()
        local ok, err = run(cas, "k", 5, "v")
        assert.is_false(ok)
        assert.are.equal("cas: expected_ctx must be a ctx string or nil, got number", err)
        ok, err = run(cas, "k", nil, "v", 3)
        assert.is_false(ok)
        assert.are.equal("cas: opts must be a map, got number", err)
        f.fail.get = "TIMEOUT: r=2"
        ok, err = run(cas, "k", nil, "v")
        assert.is_false(ok)
        assert.are.equal("cas: get failed: TIMEOUT: r=2", err)
        f.fail.put = "VALUE_TOO_LARGE: 2000000 > 1048576"
        ok, err = run(cas, "k", nil, "v")
        assert.is_false(ok)
        assert.are.equal("cas: put failed: VALUE_TOO_LARGE: 2000000 > 1048576", err)
    end)
end)
