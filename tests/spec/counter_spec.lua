-- Specs for the PN-counter: lua/moor/counter.lua and the resolver plugin
-- plugins/resolvers/counter.lua.  The CRDT laws (commutative, associative,
-- idempotent) are checked on random counters; the seed is printed and
-- MOOR_SEED=<n> replays a run exactly.

local counter = require("moor.counter")
local resolve = require("resolvers.counter")
local config = require("moor.config")

local seed = tonumber(os.getenv("MOOR_SEED") or "") or os.time()
print(("counter_spec: seed %d (MOOR_SEED=%d replays)"):format(seed, seed))

local ROUNDS = 400

-- Random values ----------------------------------------------------------------

local POOL = { "a", "b", "c", "n1", "n2", "n3", "client-7", "\0bin\255", "_" }

local function rand_id()
    if math.random(4) == 1 then
        local t = {}
        for i = 1, math.random(1, 12) do
            t[i] = string.char(math.random(0, 255))
        end
        return table.concat(t)
    end
    return POOL[math.random(#POOL)]
end

local function rand_count()
    local r = math.random(10)
    if r == 1 then
        return 0
    elseif r == 2 then
        return 2 ^ 53 - math.random(0, 1000) -- near the limit
    end
    return math.random(0, 1000)
end

local function rand_half()
    local r = math.random(6)
    if r == 1 then
        return nil -- absent
    end
    local t = {}
    for _ = 1, (r == 2 and 0 or math.random(1, 6)) do
        t[rand_id()] = rand_count()
    end
    return t
end

-- A random counter value in any accepted input form.
local function rand_counter()
    local r = math.random(20)
    if r == 1 then
        return nil
    elseif r == 2 then
        return math.random(-1000, 1000)
    end
    return { p = rand_half(), n = rand_half() }
end

local function shuffle(t)
    for i = #t, 2, -1 do
        local j = math.random(i)
        t[i], t[j] = t[j], t[i]
    end
    return t
end

-- The reference join, written independently of the module: per id, the
-- larger count, zeros dropped, a plain integer on "_".
local function ref_half_into(dst, t)
    for id, x in pairs(t or {}) do
        if x > 0 and (dst[id] or 0) < x then
            dst[id] = x
        end
    end
end

local function ref_merge(list, n)
    local out = { p = {}, n = {} }
    for i = 1, n do
        local v = list[i]
        if type(v) == "number" then
            if v > 0 then
                ref_half_into(out.p, { _ = v })
            else
                ref_half_into(out.n, { _ = -v })
            end
        elseif v ~= nil then
            ref_half_into(out.p, v.p)
            ref_half_into(out.n, v.n)
        end
    end
    return out
end

local function dump(c)
    if c == nil then
        return "nil"
    end
    local parts = {}
    for _, h in ipairs({ "p", "n" }) do
        local ids = {}
        for id in pairs(c[h] or {}) do
            ids[#ids + 1] = id
        end
        table.sort(ids)
        for _, id in ipairs(ids) do
            parts[#parts + 1] = ("%s[%q]=%.17g"):format(h, id, c[h][id])
        end
    end
    return "{" .. table.concat(parts, " ") .. "}"
end

-- Fails with both counters and the seed shown.
local function same(want, got, what)
    assert(counter.equal(want, got),
           ("%s (seed %d)\n  want %s\n  got  %s"):format(what, seed, dump(want), dump(got)))
    -- canonical form: both halves present, no zero counts
    assert.is_table(got.p)
    assert.is_table(got.n)
    for _, h in ipairs({ "p", "n" }) do
        for id, x in pairs(got[h]) do
            assert(x > 0, ("%s: zero count %s[%q] kept (seed %d)"):format(what, h, id, seed))
        end
    end
end

-- Laws on random input --------------------------------------------------------

describe("moor.counter merge", function()
    before_each(function()
        math.randomseed(seed)
    end)

    it("matches a reference join on random counters", function()
        for _ = 1, ROUNDS do
            local list, n = {}, math.random(0, 5)
            for i = 1, n do
                list[i] = rand_counter() -- nil included: the list has holes
            end
            same(ref_merge(list, n), counter.merge(unpack(list, 1, n)), "merge vs reference")
        end
    end)

    it("is commutative", function()
        for _ = 1, ROUNDS do
            local a, b = rand_counter(), rand_counter()
            same(counter.merge(a, b), counter.merge(b, a), "merge(a, b) vs merge(b, a)")
        end
    end)

    it("is associative", function()
        for _ = 1, ROUNDS do
            local a, b, c = rand_counter(), rand_counter(), rand_counter()
            same(counter.merge(counter.merge(a, b), c), counter.merge(a, counter.merge(b, c)),
                 "(a + b) + c vs a + (b + c)")
        end
    end)

    it("is idempotent", function()
        for _ = 1, ROUNDS do
            local a, b = rand_counter(), rand_counter()
            same(counter.normalize(a), counter.merge(a, a), "merge(a, a) vs a")
            local ab = counter.merge(a, b)
            same(ab, counter.merge(ab, b), "merge(merge(a, b), b) vs merge(a, b)")
            same(ab, counter.merge(ab, ab), "merge(ab, ab) vs ab")
        end
    end)

    it("never modifies its arguments", function()
        for _ = 1, 50 do
            local a = { p = { x = 5, y = 0 }, n = { x = 2 } }
            counter.merge(a, rand_counter())
            counter.incr(a, "x", 3)
            counter.decr(a, "z", 4)
            counter.normalize(a)
            assert.are.same({ p = { x = 5, y = 0 }, n = { x = 2 } }, a)
        end
    end)
end)

describe("moor.counter value", function()
    before_each(function()
        math.randomseed(seed)
    end)

    it("is sum(p) - sum(n)", function()
        for _ = 1, ROUNDS do
            local p, n, want = {}, {}, 0
            for _ = 1, math.random(0, 8) do
                local id, x = rand_id(), math.random(0, 10 ^ 6)
                want = want - (p[id] or 0) + x
                p[id] = x
            end
            for _ = 1, math.random(0, 8) do
                local id, x = rand_id(), math.random(0, 10 ^ 6)
                want = want + (n[id] or 0) - x
                n[id] = x
            end
            local got = counter.value({ p = p, n = n })
            assert(want == got, ("value: want %d, got %s (seed %d)"):format(want, tostring(got), seed))
        end
    end)

    it("reads plain integers, nil and empty halves", function()
        assert.are.equal(0, counter.value(nil))
        assert.are.equal(0, counter.value({}))
        assert.are.equal(0, counter.value({ p = {}, n = {} }))
        assert.are.equal(42, counter.value(42))
        assert.are.equal(-7, counter.value(-7))
        assert.are.equal(9, counter.value(9LL))
        assert.are.same({ p = { _ = 42 }, n = {} }, counter.normalize(42))
        assert.are.same({ p = {}, n = { _ = 7 } }, counter.normalize(-7))
        assert.are.same({ p = {}, n = {} }, counter.normalize(0))
        assert.are.equal(2 ^ 53, counter.value({ p = { a = 2 ^ 53 } }))
    end)
end)

describe("moor.counter incr/decr", function()
    it("counts per id, in p for increments and n for decrements", function()
        local c = counter.incr(nil, "a")
        c = counter.incr(c, "a", 4)
        c = counter.decr(c, "b", 2)
        c = counter.decr(c, "a")
        c = counter.incr(c, "b", -3) -- a negative increment is a decrement
        c = counter.incr(c, "c", 0)
        assert.are.same({ p = { a = 5 }, n = { a = 1, b = 5 } }, c)
        assert.are.equal(-1, counter.value(c))
    end)

    it("turns a plain number into a counter", function()
        local c = counter.incr(10, "n1", 2)
        assert.are.same({ p = { _ = 10, n1 = 2 }, n = {} }, c)
        assert.are.equal(12, counter.value(c))
    end)

    it("refuses bad ids, deltas and overflow", function()
        assert.has_error(function() counter.incr(nil, "", 1) end,
                         'counter.incr: id must be a non-empty string, got ""')
        assert.has_error(function() counter.incr(nil, 5, 1) end,
                         "counter.incr: id must be a non-empty string, got 5")
        assert.has_error(function() counter.incr(nil, "a", 1.5) end,
                         "counter.incr: delta must be an integer in -2^53..2^53, got 1.5")
        assert.has_error(function() counter.incr(nil, "a", "1") end,
                         'counter.incr: delta must be an integer in -2^53..2^53, got "1"')
        assert.has_error(function() counter.decr(nil, "a", 0 / 0) end)
        assert.has_error(function() counter.incr({ p = { a = 2 ^ 53 } }, "a", 1) end,
                         'counter.incr: p["a"] would pass 2^53')
        assert.has_error(function() counter.decr({ n = { a = 2 ^ 53 - 1 } }, "a", 2) end,
                         'counter.incr: n["a"] would pass 2^53')
    end)
end)

-- No update is lost ---------------------------------------------------------------

describe("moor.counter under concurrency", function()
    before_each(function()
        math.randomseed(seed)
    end)

    -- Replicas hold sibling lists, as the cluster does: a write adds a
    -- sibling (or replaces those the writer read), a sync copies siblings
    -- between replicas, and every reader merges what it sees.  Each actor
    -- increments only its own id, reading one replica at a time.
    it("keeps every increment and decrement through random merges", function()
        for round = 1, 40 do
            local nrep, nact = math.random(2, 5), math.random(1, 8)
            local reps, want, want_p, want_n = {}, 0, {}, {}
            for r = 1, nrep do
                reps[r] = {}
            end
            -- an actor's own last write, so it never runs behind itself
            local mine = {}
            for step = 1, math.random(20, 120) do
                local op = math.random(10)
                if op <= 6 then
                    local a = "actor" .. math.random(nact)
                    local r = reps[math.random(nrep)]
                    local seen = counter.merge(mine[a], unpack(r, 1, #r))
                    local d = math.random(-50, 50)
                    local c = counter.incr(seen, a, d)
                    mine[a] = c
                    want = want + d
                    if d > 0 then
                        want_p[a] = (want_p[a] or 0) + d
                    else
                        want_n[a] = (want_n[a] or 0) - d
                    end
                    if math.random(2) == 1 then
                        for k in pairs(r) do -- a write with the ctx of its read
                            r[k] = nil
                        end
                    end
                    r[#r + 1] = c
                elseif op <= 8 then
                    -- sync: copy every sibling of one replica to another
                    local from, to = reps[math.random(nrep)], reps[math.random(nrep)]
                    for _, v in ipairs(shuffle({ unpack(from) })) do
                        to[#to + 1] = v
                    end
                else
                    -- read repair: a replica's siblings resolved to one
                    local r = reps[math.random(nrep)]
                    local sibs = {}
                    for i, v in ipairs(r) do
                        sibs[i] = { value = v, ts = step }
                    end
                    local v = resolve(shuffle(sibs))
                    for k in pairs(r) do
                        r[k] = nil
                    end
                    r[1] = v
                end
            end
            local all = {}
            for _, r in ipairs(reps) do
                for _, v in ipairs(r) do
                    all[#all + 1] = v
                end
            end
            local final = counter.merge(unpack(all, 1, #all))
            local got = counter.value(final)
            assert(got == want, ("round %d: value %s, want %d (seed %d)"):format(round, tostring(got), want, seed))
            same({ p = want_p, n = want_n }, final, "round " .. round .. ": per-actor counts")
        end
    end)
end)

-- The resolver ---------------------------------------------------------------------

describe("resolvers.counter", function()
    before_each(function()
        math.randomseed(seed)
    end)

    it("is a function the config loader accepts as a plugin", function()
        assert.is_function(resolve)
        local c = config.new()
        c:api().cfg({ node = "n1", plugins = { "resolvers.counter" } })
        c:api().space("likes", { resolver = "counter" })
        local t = c:finish()
        assert.are.equal(resolve, t.resolvers.counter)
    end)

    it("merges live siblings in any order and ignores tombstones", function()
        for _ = 1, ROUNDS do
            local sibs, live, nlive = {}, {}, 0
            for i = 1, math.random(1, 6) do
                if math.random(4) == 1 then
                    -- a tombstone's value (even junk) is never looked at
                    sibs[i] = { tombstone = true, ts = i, value = math.random(2) == 1 and "junk" or nil }
                else
                    local v = rand_counter()
                    sibs[i] = { value = v, ts = i }
                    nlive = nlive + 1
                    live[nlive] = v
                end
            end
            local got = resolve(sibs)
            if nlive == 0 then
                assert.is_nil(got)
            else
                same(ref_merge(live, nlive), got, "resolve vs reference")
                same(got, resolve(shuffle(sibs)), "resolve of shuffled siblings")
                same(got, resolve({ { value = got, ts = 1 } }), "resolving the result again")
            end
        end
    end)

    it("resolves nothing live to nil", function()
        assert.is_nil(resolve({}))
        assert.is_nil(resolve({ { tombstone = true, ts = 5 } }))
        assert.is_nil(resolve({ { tombstone = true }, { tombstone = true, value = { p = { a = 1 } } } }))
    end)

    it("lets increments win over a concurrent delete", function()
        local got = resolve({
            { value = { p = { a = 3 }, n = { b = 1 } }, ts = 1 },
            { tombstone = true, ts = 2 },
            { value = { p = { a = 2, c = 4 } }, ts = 3 },
        })
        assert.are.same({ p = { a = 3, c = 4 }, n = { b = 1 } }, got)
        assert.are.equal(6, counter.value(got))
    end)

    it("accepts what MessagePack gives back for empty halves and 64-bit counts", function()
        local got = resolve({ { value = { p = { a = 2LL }, n = {} } }, { value = { p = {}, n = { a = 1ULL } } } })
        assert.are.same({ p = { a = 2 }, n = { a = 1 } }, got)
        assert.are.equal("number", type(got.p.a))
    end)

    it("rejects malformed values with a clear message", function()
        local cases = {
            { nil, "counter: expected a list of siblings, got nil" },
            { { "x" }, "counter: sibling 1 is a string, expected a table" },
            { { { value = 1 }, { value = "12" } },
              "counter: sibling 2 is a string, expected a counter {p = {[id] = n}, n = {[id] = n}} or an integer" },
            { { { value = true } },
              "counter: sibling 1 is a boolean, expected a counter {p = {[id] = n}, n = {[id] = n}} or an integer" },
            { { { value = 1.5 } }, "counter: sibling 1 is the number 1.5, expected an integer in -2^53..2^53" },
            { { { value = 2 ^ 60 } }, "counter: sibling 1 is the number 1.1529215046068e+18, expected an integer in -2^53..2^53" },
            { { { value = { 3, 4 } } }, "counter: sibling 1 has the key 1; a counter has only p and n" },
            { { { value = { p = {}, x = 1 } } }, 'counter: sibling 1 has the key "x"; a counter has only p and n' },
            { { { value = { p = 5 } } }, "counter: sibling 1: p is a number, expected a map of id -> count" },
            { { { value = { n = "a" } } }, "counter: sibling 1: n is a string, expected a map of id -> count" },
            { { { value = { p = { 7 } } } }, "counter: sibling 1: p has the key 1; ids must be non-empty strings" },
            { { { value = { p = { [""] = 1 } } } }, 'counter: sibling 1: p has the key ""; ids must be non-empty strings' },
            { { { value = { p = { a = -1 } } } }, 'counter: sibling 1: p["a"] is -1, expected an integer in 0..2^53' },
            { { { value = { n = { a = 0.5 } } } }, 'counter: sibling 1: n["a"] is 0.5, expected an integer in 0..2^53' },
            { { { value = { n = { a = "3" } } } }, 'counter: sibling 1: n["a"] is "3", expected an integer in 0..2^53' },
            { { { value = { p = { a = 2 ^ 53 + 2 } } } },
              'counter: sibling 1: p["a"] is 9.007199254741e+15, expected an integer in 0..2^53' },
            { { { value = { p = { a = 0 / 0 } } } }, 'counter: sibling 1: p["a"] is ' .. tostring(0 / 0) .. ", expected an integer in 0..2^53" },
            { { { value = { p = { a = 2 ^ 54 + 0ULL } } } },
              'counter: sibling 1: p["a"] is 18014398509481984ULL, expected an integer in 0..2^53' },
        }
        for i, case in ipairs(cases) do
            local ok, err = pcall(resolve, case[1])
            assert(not ok, "case " .. i .. " did not fail")
            assert.are.equal(case[2], err)
        end
        -- the helpers name their argument
        assert.has_error(function() counter.merge({ p = {} }, "x") end,
                         "counter: argument 2 is a string, expected a counter {p = {[id] = n}, n = {[id] = n}} or an integer")
        assert.has_error(function() counter.value({ q = 1 }) end,
                         'counter: value has the key "q"; a counter has only p and n')
    end)
end)
