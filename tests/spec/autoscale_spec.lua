-- Specs for lua/moor/autoscale.lua (the default scaling policy and how an
-- answer is normalised) and for moor.autoscale{...} in lua/moor/config.lua,
-- with synthetic cluster tables: the window, the hysteresis between the
-- high and low marks, the bounds, which node goes.

local autoscale = require("moor.autoscale")
local config = require("moor.config")

-- A cluster of k up nodes n1..nk, each with the given p99 and req/s.
local function cluster(k, p99, rps, now_ms, extra)
    local nodes = {}
    for i = 1, k do
        nodes[i] = { id = "n" .. i, status = "up", addr = "127.0.0." .. i .. ":7700",
                     load = { p99_ms = p99, rps = { total = rps, get = rps } } }
    end
    for _, nd in ipairs(extra or {}) do
        nodes[#nodes + 1] = nd
    end
    return { nodes = nodes, n = 3, now_ms = now_ms, self = "n1" }
end

-- Calls policy every step_s from t0 for dur_s with the same figures;
-- returns the answers as normalised decisions, and the first non-none.
local function drive(policy, k, p99, rps, t0_s, dur_s, step_s)
    local out, first = {}, nil
    for t = t0_s, t0_s + dur_s, step_s do
        local d = autoscale.normalize(policy(cluster(k, p99, rps, t * 1000)))
        out[#out + 1] = d
        if d.action ~= "none" and not first then
            first = { at = t, d = d }
        end
    end
    return out, first
end

describe("moor.autoscale.normalize", function()
    it("reads every form of answer", function()
        assert.same({ action = "none" }, autoscale.normalize(nil))
        assert.same({ action = "none", reason = "calm" }, autoscale.normalize("none", "calm"))
        assert.same({ action = "add", reason = "busy" }, autoscale.normalize("add", "busy"))
        assert.same({ action = "add", reason = "r" }, autoscale.normalize({ add = true, reason = "r" }))
        assert.same({ action = "remove", node = "n4", reason = "idle" },
                    autoscale.normalize({ remove = "n4", reason = "idle" }))
        assert.same({ action = "remove", node = "n4", reason = "second" },
                    autoscale.normalize({ remove = "n4" }, "second"))
    end)
    it("refuses anything else, naming it", function()
        assert.has_error(function() autoscale.normalize("grow") end,
            'autoscale policy: the answer must be nil, "none", "add", {add = true} or {remove = id}, got "grow"')
        assert.has_error(function() autoscale.normalize(42) end)
        assert.has_error(function() autoscale.normalize({ remove = 7 }) end,
            "autoscale policy: remove must be a node id (a string of 1..64 bytes)")
        assert.has_error(function() autoscale.normalize({ foo = 1 }) end)
    end)
    it("cuts long reasons", function()
        local d = autoscale.normalize("add", string.rep("x", 500))
        assert.equal(autoscale.REASON_MAX + 3, #d.reason)
    end)
end)

describe("moor.autoscale.default", function()
    it("adds only after the load stayed over for the whole window", function()
        local p = autoscale.default { p99_ms = 50, rps_per_node = 1000, window_s = 30 }
        local _, first = drive(p, 3, 10, 5000, 0, 60, 5)
        assert.is_not_nil(first)
        assert.equal("add", first.d.action)
        assert.equal(30, first.at) -- over since t=0, decided at t=30
        assert.truthy(first.d.reason:find("rps_per_node", 1, true))
    end)
    it("restarts the window when the load dips once", function()
        local p = autoscale.default { p99_ms = 50, rps_per_node = 1000, window_s = 30 }
        drive(p, 3, 10, 5000, 0, 25, 5)           -- over for 25 s
        local d = autoscale.normalize(p(cluster(3, 10, 500, 30000))) -- one calm check
        assert.equal("none", d.action)
        local _, first = drive(p, 3, 10, 5000, 35, 60, 5)
        assert.equal(65, first.at) -- a fresh window from t=35
    end)
    it("adds on p99 alone", function()
        local p = autoscale.default { p99_ms = 50, rps_per_node = 1e9, window_s = 10 }
        local _, first = drive(p, 3, 80, 10, 0, 20, 1)
        assert.equal("add", first.d.action)
        assert.equal(10, first.at)
    end)
    it("has a dead band: between the marks it does nothing", function()
        local p = autoscale.default { p99_ms = 50, rps_per_node = 1000, low_rps_per_node = 100,
                                      window_s = 10 }
        local out = drive(p, 5, 10, 500, 0, 120, 1) -- 500 req/s: under high, over low
        for _, d in ipairs(out) do
            assert.equal("none", d.action)
        end
        -- p99 between the low mark (25) and the high one (50): no removal either
        out = drive(p, 5, 40, 10, 200, 120, 1)
        for _, d in ipairs(out) do
            assert.equal("none", d.action)
        end
    end)
    it("removes the highest id after a calm window, never below n", function()
        local p = autoscale.default { p99_ms = 50, rps_per_node = 1000, low_rps_per_node = 100,
                                      window_s = 10 }
        local _, first = drive(p, 5, 1, 10, 0, 20, 1)
        assert.equal("remove", first.d.action)
        assert.equal("n5", first.d.node)
        assert.equal(10, first.at)
        -- at n = 3 up nodes it stays
        local out = drive(p, 3, 1, 10, 100, 60, 1)
        for _, d in ipairs(out) do
            assert.equal("none", d.action)
        end
        assert.truthy(out[#out].reason:find("min_nodes = 3", 1, true))
    end)
    it("orders ids naturally and spares the evaluator", function()
        local p = autoscale.default { window_s = 1, min_nodes = 1 }
        local c = { n = 1, self = "n10", now_ms = 0, nodes = {
            { id = "n9", status = "up", load = { p99_ms = 0, rps = { total = 0 } } },
            { id = "n10", status = "up", load = { p99_ms = 0, rps = { total = 0 } } },
            { id = "n2", status = "up", load = { p99_ms = 0, rps = { total = 0 } } },
        } }
        p(c)
        c.now_ms = 1000
        local d = autoscale.normalize(p(c))
        assert.equal("remove", d.action)
        assert.equal("n9", d.node) -- n10 is the highest but evaluates
        assert.is_true(autoscale.id_less("n9", "n10"))
        assert.is_false(autoscale.id_less("n10", "n9"))
        assert.is_true(autoscale.id_less("a", "b"))
    end)
    it("never above max_nodes", function()
        local p = autoscale.default { rps_per_node = 10, window_s = 5, max_nodes = 4 }
        local out, first = drive(p, 4, 1, 1000, 0, 30, 1)
        assert.is_nil(first)
        assert.truthy(out[#out].reason:find("max_nodes = 4", 1, true))
    end)
    it("restarts the window when the number of up nodes changes or calls pause", function()
        local p = autoscale.default { rps_per_node = 10, window_s = 10 }
        drive(p, 3, 1, 1000, 0, 8, 1)
        -- a fourth node comes up: the 8 s of overload seen so far no longer count
        local _, first = drive(p, 4, 1, 1000, 9, 30, 1)
        assert.equal(19, first.at)
        -- a pause longer than the window between calls: a fresh window too
        p = autoscale.default { rps_per_node = 10, window_s = 10 }
        drive(p, 3, 1, 1000, 0, 8, 1)
        _, first = drive(p, 3, 1, 1000, 100, 30, 1)
        assert.equal(110, first.at)
    end)
    it("waits while a member is joining or leaving", function()
        local p = autoscale.default { rps_per_node = 10, window_s = 2 }
        for t = 0, 10 do
            local c = cluster(3, 1, 1000, t * 1000, { { id = "n4", status = "joining" } })
            local d = autoscale.normalize(p(c))
            assert.equal("none", d.action)
            assert.equal("a member is joining or leaving", d.reason)
        end
    end)
    it("treats members without figures as idle", function()
        local p = autoscale.default { window_s = 1, min_nodes = 1 }
        local c = { n = 1, self = "a", now_ms = 0, nodes = { { id = "a", status = "up" },
                                                               { id = "b", status = "up" } } }
        p(c)
        c.now_ms = 1000
        assert.same({ action = "remove", node = "b" },
                    (function() local d = autoscale.normalize(p(c)); d.reason = nil; return d end)())
    end)
end)

describe("moor.autoscale{} in the config", function()
    local function load(f)
        local c = config.new()
        f(c:api())
        return c:finish()
    end
    local function fails(f, needle)
        local ok, err = pcall(load, f)
        assert.is_false(ok)
        assert.truthy(tostring(err):find(needle, 1, true), tostring(err))
    end

    it("keeps the settings and the policy, wrapped", function()
        local t = load(function(m)
            m.cfg { node = "n1" }
            m.autoscale { check_s = 2, add = "scripts/scaler.sh add", remove = "x",
                          policy = function(c) return { remove = c.nodes[1].id }, "why" end }
        end)
        assert.same({ check_s = 2, cooldown_s = 60, add = "scripts/scaler.sh add", remove = "x" },
                    t.autoscale)
        local fn = t.resolvers[config.AUTOSCALE_POLICY]
        assert.same({ action = "remove", node = "n3", reason = "why" },
                    fn({ nodes = { { id = "n3" } } }))
    end)
    it("checks what it is given", function()
        fails(function(m) m.autoscale { add = "a" } end,
              "moor.autoscale: policy must be a function(cluster) -> decision, got nil")
        fails(function(m) m.autoscale { policy = print } end,
              "moor.autoscale: give add = \"command\" or remove = \"command\"")
        fails(function(m) m.autoscale { policy = print, add = "a", check_s = 0 } end,
              "moor.autoscale: check_s must be an integer in 1..86400, got 0")
        fails(function(m) m.autoscale { policy = print, add = "a", every = 3 } end,
              "moor.autoscale: unknown key 'every'")
        fails(function(m) m.autoscale { policy = print, add = "" } end,
              "moor.autoscale: add must be a non-empty string")
    end)
end)
