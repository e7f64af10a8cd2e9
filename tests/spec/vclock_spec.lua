-- Specs for lua/moor/vclock.lua: the C vector clocks (core/cluster/vclock.c)
-- through the FFI, checked against a pure-Lua reference on random clocks.
-- Needs moor_core.so on --cpath (the moor_core target).  The seed is
-- printed; MOOR_SEED=<n> replays a run exactly.

local vclock = require("moor.vclock")

local seed = tonumber(os.getenv("MOOR_SEED") or "") or os.time()
print(("vclock_spec: seed %d (MOOR_SEED=%d replays)"):format(seed, seed))

-- Reference ----------------------------------------------------------------------

-- entries -> {[id] = {counter, ts}}
local function as_map(c)
    local m = {}
    for _, e in ipairs(c:entries()) do
        m[e.id] = { e.counter, e.ts }
    end
    return m
end

local function ref_compare(a, b)
    local ma, mb = as_map(a), as_map(b)
    local a_ahead, b_ahead = false, false
    for id, x in pairs(ma) do
        local y = mb[id] and mb[id][1] or 0
        a_ahead = a_ahead or x[1] > y
        b_ahead = b_ahead or y > x[1]
    end
    for id, y in pairs(mb) do
        if not ma[id] then
            b_ahead = true
        end
    end
    if a_ahead and b_ahead then
        return "concurrent"
    end
    return a_ahead and "after" or b_ahead and "before" or "equal"
end

-- Pointwise max; ts follows the larger counter, the larger ts on a tie.
local function ref_merge(a, b)
    local m = as_map(a)
    for id, y in pairs(as_map(b)) do
        local x = m[id]
        if not x or y[1] > x[1] or (y[1] == x[1] and y[2] > x[2]) then
            m[id] = y
        end
    end
    local out = {}
    for id, x in pairs(m) do
        out[#out + 1] = { id = id, counter = x[1], ts = x[2] }
    end
    table.sort(out, function(p, q) return p.id < q.id end)
    return out
end

-- Random clocks -------------------------------------------------------------------

local POOL = { "a", "b", "ab", "n1", "n2", "n3", "\0", "\0\0", "\255", ("z"):rep(64) }

local function rand_entries(max)
    local used, list = {}, {}
    for _ = 1, math.random(0, max or 6) do
        local id = POOL[math.random(#POOL)]
        if math.random(5) == 1 then
            local t = {}
            for i = 1, math.random(1, 64) do
                t[i] = string.char(math.random(0, 255))
            end
            id = table.concat(t)
        end
        if not used[id] then
            used[id] = true
            list[#list + 1] = { id, math.random(1, 4), math.random(0, 2 ^ 40) }
        end
    end
    return list
end

-- A random clock, often related to base (a descendant or an ancestor), so
-- that every ordering comes up.
local function rand_clock(base)
    local r = math.random(4)
    if base and r == 1 then
        local c = base:copy()
        for _ = 1, math.random(0, 3) do
            assert(c:increment(POOL[math.random(#POOL)], math.random(0, 1000)))
        end
        return c
    elseif base and r == 2 then
        local keep = {}
        for _, e in ipairs(base:entries()) do
            if math.random(3) > 1 then
                keep[#keep + 1] = { e.id, math.random(1, e.counter), e.ts }
            end
        end
        return vclock.new(keep)
    end
    return vclock.new(rand_entries())
end

local function fail_msg(what, a, b, want, got)
    return ("%s (seed %d)\n  a    %s\n  b    %s\n  want %s\n  got  %s"):format(
        what, seed, tostring(a), tostring(b), tostring(want), tostring(got))
end

-- Specs -----------------------------------------------------------------------------

describe("moor.vclock", function()
    before_each(function()
        math.randomseed(seed)
    end)

    it("increments, adding an entry at 1 and keeping ids sorted", function()
        local c = vclock.new()
        assert.are.equal(0, c:size())
        assert.are.equal(c, c:increment("n2", 10))
        assert(c:increment("n1", 11))
        assert(c:increment("n2", 12))
        assert.are.same({
            { id = "n1", counter = 1, ts = 11 },
            { id = "n2", counter = 2, ts = 12 },
        }, c:entries())
        assert.are.equal(2, c:get("n2"))
        assert.are.equal(0, c:get("n9"))
        assert.are.equal('vclock{"n1":1@11, "n2":2@12}', tostring(c))
    end)

    it("compares: equal, before, after, concurrent", function()
        local a = vclock.new():increment("n1", 1)
        local b = a:copy():increment("n2", 2)
        local c = a:copy():increment("n3", 3)
        assert.are.equal("equal", a:compare(a:copy()))
        assert.are.equal("before", a:compare(b))
        assert.are.equal("after", b:compare(a))
        assert.are.equal("concurrent", b:compare(c))
        assert.are.equal("after", a:compare(vclock.new()))
        assert.are.equal("equal", vclock.new():compare(vclock.new()))
        assert.is_true(b:descends(a))
        assert.is_true(a:descends(a))
        assert.is_false(a:descends(b))
        assert.is_true(a == a:copy())
        assert.is_false(a == b)
        assert.are.equal("before", vclock.compare(a:encode(), b))
    end)

    it("compare matches the reference on random clocks", function()
        local seen = {}
        for _ = 1, 2000 do
            local a = rand_clock()
            local b = rand_clock(a)
            if math.random(2) == 1 then
                a, b = b, a
            end
            local want, got = ref_compare(a, b), a:compare(b)
            assert(want == got, fail_msg("compare", a, b, want, got))
            seen[got] = (seen[got] or 0) + 1
        end
        -- the generator really produced every ordering
        for _, o in ipairs({ "equal", "before", "after", "concurrent" }) do
            assert(seen[o] and seen[o] > 10, ("only %s '%s' results (seed %d)"):format(tostring(seen[o]), o, seed))
        end
    end)

    it("merge matches the reference and descends from both sides", function()
        for _ = 1, 1000 do
            local a = rand_clock()
            local b = rand_clock(a)
            local m = assert(a:copy():merge(b))
            assert.are.same(ref_merge(a, b), m:entries())
            assert(m:descends(a) and m:descends(b), fail_msg("merge descends", a, b, "both", m))
            assert.are.equal("equal", m:compare(assert(b:copy():merge(a))))
            assert.are.same(m:entries(), assert(m:copy():merge(m)):entries())
        end
    end)

    it("encodes and decodes round trip on random clocks", function()
        for _ = 1, 1000 do
            local a = rand_clock()
            local s = assert(a:encode())
            local b, err = vclock.decode(s)
            assert(b, err)
            assert.are.same(a:entries(), b:entries())
            assert.are.equal(s, b:encode())
        end
    end)

    it("encodes as MessagePack [[id (bin), counter, ts], ...]", function()
        assert.are.equal("\x90", vclock.new():encode())
        assert.are.equal("\x91\x93\xc4\x01a\x01\x00", vclock.new({ { "a", 1, 0 } }):encode())
        local big = vclock.new({ { id = "n1", counter = 2 ^ 53, ts = 0xffffffffffffffffULL } })
        local e = vclock.decode(big:encode()):entries()[1]
        assert.are.equal(2 ^ 53, e.counter)
        assert.is_true(e.ts == 0xffffffffffffffffULL)
        assert.are.equal("cdata", type(e.ts))
    end)

    it("decode rejects malformed encodings with a message", function()
        local cases = {
            { "", "vclock: not an array" },
            { "\xc0", "vclock: not an array" },
            { "\x91\x92\xc4\x01a\x01", "vclock: entry is not a 3-element array" },
            { "\x91\x93\xa1a\x01\x00", "vclock: node id is not bin of 1..64 bytes" },
            { "\x91\x93\xc4\x00\x01\x00", "vclock: node id is not bin of 1..64 bytes" },
            { "\x91\x93\xc4\x01a\x00\x00", "vclock: counter is not a positive integer" },
            { "\x91\x93\xc4\x01a\x01\xff", "vclock: timestamp is not a non-negative integer" },
            { "\x92\x93\xc4\x01b\x01\x00\x93\xc4\x01a\x01\x00", "vclock: node ids unsorted or duplicated" },
            { "\x92\x93\xc4\x01a\x01\x00\x93\xc4\x01a\x02\x00", "vclock: node ids unsorted or duplicated" },
            { "\xdc\x00\x41" .. ("\x90"):rep(65), "vclock: 65 entries (at most 64)" },
            { "\x91\x93\xc4\x01a\x01\x00!", "vclock: 1 bytes after the clock" },
        }
        for i, case in ipairs(cases) do
            local c, err = vclock.decode(case[1])
            assert(c == nil, "case " .. i .. " decoded")
            assert.are.equal(case[2], err)
        end
        -- every truncation of a valid encoding fails cleanly
        local s = vclock.new({ { "n1", 300, 1700000000000 }, { "n2", 1, 5 } }):encode()
        for n = 0, #s - 1 do
            local c, err = vclock.decode(s:sub(1, n))
            assert(c == nil and err:find("^vclock: "), "prefix of " .. n .. " bytes: " .. tostring(err))
        end
        -- random bytes: a clock or nil, err, never a crash
        for _ = 1, 3000 do
            local t = {}
            for i = 1, math.random(0, 40) do
                t[i] = string.char(math.random(0, 255))
            end
            if math.random(2) == 1 then
                t[1] = string.char(0x90 + math.random(0, 3))
            end
            local c, err = vclock.decode(table.concat(t))
            assert(c ~= nil or type(err) == "string")
        end
    end)

    it("reports a full clock instead of growing past 64 entries", function()
        local full, other = {}, {}
        for i = 1, 64 do
            full[i] = { ("a%02d"):format(i), 1, i }
            other[i] = { ("b%02d"):format(i), 1, i }
        end
        local c = vclock.new(full)
        assert.are.equal(64, c:size())
        local r, err = c:increment("new", 1)
        assert.is_nil(r)
        assert.are.equal("vclock: full (64 entries)", err)
        assert(c:increment("a01", 99)) -- an existing entry still counts up
        local before = c:entries()
        r, err = c:merge(vclock.new(other))
        assert.is_nil(r)
        assert.are.equal("vclock: merge exceeds 64 entries", err)
        assert.are.same(before, c:entries())
    end)

    it("prunes by entry count and by age", function()
        local c = vclock.new({ { "a", 1, 100 }, { "b", 1, 50 }, { "c", 1, 300 }, { "d", 1, 200 } })
        assert.are.equal(0, c:prune())
        assert.are.equal(2, c:copy():prune({ max_entries = 2 }))
        local p = c:copy()
        p:prune({ max_entries = 2 })
        assert.are.same({ "c", "d" }, { p:entries()[1].id, p:entries()[2].id }) -- oldest went
        p = c:copy()
        assert.are.equal(2, p:prune({ max_age_ms = 150, now = 310 })) -- older than 160
        assert.are.equal(2, p:size())
        p = c:copy()
        assert.are.equal(1, p:prune({ max_age_ms = 150, now = 310, keep_min = 3 }))
        assert.are.same({ "a", "c", "d" }, { p:entries()[1].id, p:entries()[2].id, p:entries()[3].id })
        assert.has_error(function() c:prune({ max_age_ms = 5 }) end,
                         "moor.vclock: prune with max_age_ms needs now (wall ms)")
    end)

    it("pruned clocks still compare as the reference says", function()
        for _ = 1, 500 do
            local a = rand_clock()
            local b = rand_clock(a)
            a:prune({ max_entries = math.random(0, 4) })
            local want, got = ref_compare(a, b), a:compare(b)
            assert(want == got, fail_msg("compare after prune", a, b, want, got))
        end
    end)

    it("refuses bad arguments", function()
        local c = vclock.new()
        assert.has_error(function() c:increment("", 1) end,
                         "moor.vclock: node id must be a string of 1..64 bytes, got 0 bytes")
        assert.has_error(function() c:increment(("x"):rep(65), 1) end,
                         "moor.vclock: node id must be a string of 1..64 bytes, got 65 bytes")
        assert.has_error(function() c:increment(7, 1) end,
                         "moor.vclock: node id must be a string of 1..64 bytes, got number")
        assert.has_error(function() c:increment("a", -1) end,
                         "moor.vclock: ts must be an integer in 0..2^53, got -1")
        assert.has_error(function() c:compare("x") end, "moor.vclock: other must be a clock, got string")
        assert.has_error(function() c:merge({}) end, "moor.vclock: other must be a clock, got table")
        assert.has_error(function() vclock.decode(5) end, "moor.vclock: decode takes a string, got number")
        assert.has_error(function() vclock.new({ { "a", 0, 1 } }) end,
                         "moor.vclock: counter of entry 1 must be an integer in 1..2^53, got 0")
        assert.has_error(function() vclock.new({ { "a", 1, 1 }, { "a", 2, 1 } }) end,
                         'moor.vclock: node id "a" appears twice')
        assert.has_error(function() vclock.new("a") end,
                         "moor.vclock: new takes nil or a list of entries, got string")
        assert.are.equal(0, c:size()) -- nothing half-done
    end)
end)
