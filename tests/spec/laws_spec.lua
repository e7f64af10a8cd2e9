-- Specs for lua/moor/laws.lua: the resolver law checks that moord --check,
-- reloads and moor.testing run.  Every broken law is caught with its
-- failing input in the message; the shipped resolver plugins hold all
-- three laws; the check is deterministic given its seed and bounded by
-- opts.stop.

local laws = require("moor.laws")

local function live(siblings)
    local out = {}
    for _, s in ipairs(siblings) do
        if not s.tombstone then
            out[#out + 1] = s.value
        end
    end
    return out
end

local function first(siblings)
    return siblings[1].value
end

local function sum(siblings)
    local t = 0
    for _, v in ipairs(live(siblings)) do
        t = t + v
    end
    return t
end

local function mean(siblings)
    local v = live(siblings)
    if #v > 0 then
        return sum(siblings) / #v
    end
end

local function max(siblings)
    local best
    for _, v in ipairs(live(siblings)) do
        if best == nil or v > best then
            best = v
        end
    end
    return best
end

-- the failure for law in report, or nil
local function failure(report, law)
    for _, f in ipairs(report.failures) do
        if f.law == law then
            return f
        end
    end
end

describe("moor.laws.check", function()
    it("passes the shipped resolver plugins", function()
        for name, opts in pairs(laws.PLUGINS) do
            local fn = require(name)
            for _, seed in ipairs({ 1, 2, 3 }) do
                local ok, report = laws.check(fn, { values = opts.values, seed = seed })
                assert.is_true(ok, name .. " (seed " .. seed .. "): " .. report.text)
                assert.equal(200, report.runs)
            end
        end
    end)

    it("passes a lawful resolver and says which laws and runs", function()
        local ok, report = laws.check(max, { values = "number" })
        assert.is_true(ok, report.text)
        assert.equal("ok (commutative, associative, idempotent; 200 runs)", report.text)
        assert.same({}, report.failures)
    end)

    it("catches a resolver that is not commutative, with the input", function()
        local ok, report = laws.check(first, { values = "integer" })
        assert.is_false(ok)
        local f = assert(failure(report, "commutative"), report.text)
        assert.truthy(#f.input >= 2)
        assert.truthy(f.message:find("^not commutative: siblings {{"), f.message)
        assert.truthy(f.message:find("but in the order {{", 1, true), f.message)
        -- the message shows the input: every sibling's value or tombstone
        for _, s in ipairs(f.input) do
            local shown = s.tombstone and "tombstone = true" or ("value = " .. laws.show(s.value))
            assert.truthy(f.message:find(shown, 1, true), shown .. " not in " .. f.message)
        end
    end)

    it("catches a resolver that is not associative, with the input", function()
        local ok, report = laws.check(mean, { values = "integer", laws = { "commutative", "associative" } })
        assert.is_false(ok)
        assert.is_nil(failure(report, "commutative"), report.text)
        local f = assert(failure(report, "associative"), report.text)
        assert.truthy(f.message:find("^not associative: "), f.message)
        assert.truthy(f.message:find("{value = ", 1, true), f.message)
        -- the input really breaks it: group it as the message says
        assert.truthy(#f.input >= 2)
    end)

    it("catches a resolver that is not idempotent, with the input", function()
        local ok, report = laws.check(sum, { values = "integer" })
        assert.is_false(ok)
        local f = assert(failure(report, "idempotent"), report.text)
        assert.is_nil(failure(report, "commutative"))
        assert.is_nil(failure(report, "associative"))
        assert.truthy(f.message:find("^not idempotent: "), f.message)
        assert.truthy(f.message:find("value = " .. laws.show(f.input[1].value), 1, true), f.message)
    end)

    it("catches a resolver that resolves its own result to something else", function()
        -- wraps the winner in a list: resolve{resolve(S)} nests it again
        local function wrap(siblings)
            return { max(siblings) }
        end
        local ok, report = laws.check(wrap, { values = "integer", laws = { "idempotent" } })
        assert.is_false(ok)
        local f = assert(failure(report, "idempotent"), report.text)
        assert.truthy(f.message:find("resolving that value alone gives", 1, true)
                      or f.message:find("the same sibling twice", 1, true), f.message)
    end)

    it("reports a resolver's error as a failure with its input", function()
        local ok, report = laws.check(max) -- default values mix strings and numbers
        assert.is_false(ok)
        local f = assert(failure(report, "error"), report.text)
        assert.truthy(f.message:find("^raised an error: .*attempt to compare"), f.message)
        assert.truthy(f.message:find("; siblings: {{", 1, true), f.message)
        assert.equal(1, #report.failures) -- nothing else is tried after an error
    end)

    it("keeps a message on one line", function()
        local ok, report = laws.check(function() error("two\nlines\1", 0) end, { runs = 1 })
        assert.is_false(ok)
        assert.is_nil(report.text:find("\n", 1, true))
        assert.truthy(report.text:find("two\\nlines\\001", 1, true), report.text)
    end)

    it("is deterministic given the seed", function()
        local _, a = laws.check(first, { seed = 42 })
        local _, b = laws.check(first, { seed = 42 })
        assert.equal(a.text, b.text)
        local texts = {}
        for seed = 1, 5 do
            texts[select(2, laws.check(first, { seed = seed })).text] = true
        end
        local n = 0
        for _ in pairs(texts) do
            n = n + 1
        end
        assert.truthy(n > 1, "every seed gave the same input")
    end)

    it("gives the resolver what the node gives: value, ts, tombstone, dot, clock", function()
        local seen = 0
        laws.check(function(siblings)
            for _, s in ipairs(siblings) do
                assert.equal("number", type(s.ts))
                assert.equal("boolean", type(s.tombstone))
                assert.equal(s.tombstone, s.value == nil)
                local id, c = next(s.dot)
                assert.equal(c, s.clock[id] and math.min(c, s.clock[id]))
                assert.truthy(s.clock[id] >= c)
                seen = seen + 1
            end
            return 1
        end, { runs = 20 })
        assert.truthy(seen > 20)
    end)

    it("a resolver that changes its input does not change the next call's", function()
        local function sort_then_max(siblings)
            table.sort(siblings, function(a, b) return (a.ts or 0) < (b.ts or 0) end)
            for i = #siblings, 1, -1 do
                siblings[i] = nil
            end
            return 0
        end
        local ok, report = laws.check(sort_then_max)
        assert.is_true(ok, report.text)
    end)

    it("takes a generator function and the laws to check", function()
        local calls = 0
        local ok, report = laws.check(sum, {
            values = function(rng)
                calls = calls + 1
                return rng:int(0, 9)
            end,
            laws = { "associative", "commutative" },
            runs = 50,
        })
        assert.is_true(ok, report.text)
        assert.equal("ok (commutative, associative; 50 runs)", report.text)
        assert.truthy(calls >= 50)
    end)

    it("stops when opts.stop says so and says how far it got", function()
        local n = 0
        local ok, report = laws.check(max, { values = "number", stop = function()
            n = n + 1
            return n > 30
        end })
        assert.is_true(ok, report.text)
        assert.truthy(report.stopped)
        assert.truthy(report.runs < 200)
        assert.truthy(report.text:find("stopped at the check's time budget", 1, true), report.text)
    end)

    it("refuses bad options", function()
        assert.has_error(function() laws.check(max, { values = "numbers" }) end)
        assert.has_error(function() laws.check(max, { laws = { "transitive" } }) end)
        assert.has_error(function() laws.check(max, { runs = 0 }) end)
        assert.has_error(function() laws.check("max") end)
    end)

    it("checks lww's ties: equal timestamps resolve the same in any order", function()
        local lww = require("resolvers.lww")
        local a = { value = "a", ts = 5, tombstone = false }
        local b = { value = "b", ts = 5, tombstone = false }
        local d = { ts = 5, tombstone = true }
        assert.equal(lww({ a, b }), lww({ b, a }))
        assert.is_nil(lww({ a, d }))
        assert.is_nil(lww({ d, a }))
    end)
end)

describe("moor.laws values", function()
    it("compares MessagePack-like values deeply", function()
        assert.is_true(laws.equal({ x = 1, y = { 1, 2 } }, { y = { 1, 2 }, x = 1 }))
        assert.is_true(laws.equal(0, -0.0))
        assert.is_true(laws.equal(0 / 0, 0 / 0))
        assert.is_false(laws.equal(1, "1"))
        assert.is_false(laws.equal({ 1, 2 }, { 2, 1 }))
        assert.is_false(laws.equal({ x = 1 }, { x = 1, y = 2 }))
        assert.is_false(laws.equal(nil, false))
    end)

    it("shows values readably", function()
        assert.equal('{1, "a", {x = true}}', laws.show({ 1, "a", { x = true } }))
        assert.equal('{["a b"] = 1, [2] = 0}', laws.show({ ["a b"] = 1, [2] = 0 }))
        assert.equal('"\\0\\n"', laws.show("\0\n"))
        assert.equal("2.5", laws.show(2.5))
    end)
end)

describe("moor.laws on a config table", function()
    it("checks each resolver with its options and skips the autoscale policy", function()
        local t = {
            resolvers = { max = max, first = first, set_union = require("resolvers.set_union"),
                          ["autoscale:policy"] = function() return {} end },
            resolver_checks = { max = { values = "number" }, first = {},
                                set_union = { plugin = "resolvers.set_union" } },
        }
        assert.same({ "first", "max", "set_union" }, laws.resolver_names(t))
        local call = function(name, siblings) return t.resolvers[name](siblings) end
        local ok, text = laws.check_resolver(t, "max", call)
        assert.is_true(ok, text)
        ok, text = laws.check_resolver(t, "set_union", call)
        assert.is_true(ok, text)
        ok, text = laws.check_resolver(t, "first", call)
        assert.is_false(ok)
        assert.truthy(text:find("not commutative", 1, true), text)
    end)
end)
