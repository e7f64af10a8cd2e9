--[[
moor.laws -- checks that a resolver obeys the laws replicas rely on, on
generated sibling sets.

  local laws = require("moor.laws")
  local ok, report = laws.check(resolve, {seed = 7, runs = 200, values = "number"})
  if not ok then print(report.text) end

Why the laws matter.  A resolver turns the siblings of a key into one
value (README "Resolvers"); any node may run it, on whatever siblings it
has at that moment, and its result goes back to the replicas as a new
version that later merges meet again.
  * commutative: the order of the siblings does not change the result.
    Replicas hold the same siblings in different orders; a resolver that
    depends on the order makes two nodes store different values for one
    read.
  * associative: merging in groups gives what merging everything at once
    gives.  A coordinator resolves the siblings it sees and writes the
    result back; a write concurrent with that, or a replica that missed
    it, is resolved later against the result.  So siblings meet in any
    grouping; a resolver that is not associative loses or invents data
    depending on timing.
  * idempotent: a sibling seen twice counts once (resolve{a, a} =
    resolve{a}: two clients wrote the same value, or repair delivers a
    version again), and resolving a resolved value gives it back
    (resolve{resolve(S)} = resolve(S)), so read repair and anti-entropy,
    which re-merge what is already merged, change nothing.
All three are wanted for a resolver whose space is replicated (any space
of a cluster); opts.laws can narrow the check to the ones a resolver
claims.

What a resolver receives is what the node gives it: a list of siblings
{value = v, ts = wall_ms, tombstone = bool, dot = {node = counter},
clock = {node = counter, ...}} (value nil for a tombstone; clock the same
for every sibling of one call).  It returns one value, nil meaning
"deleted".  When a group's result enters a later merge it does so as a
sibling {value = result, tombstone = (result == nil), ts = the group's
latest ts} with a fresh dot: what the node's write-back stores (it also
gets a newer time, but any later write is later still).

Values are compared by deep equality of MessagePack-like values: numbers
by value (-0 equals 0, NaN equals NaN), strings by bytes, tables by their
keys and values recursively (an empty map equals an empty array).

check(resolve, opts) -> ok, report
  resolve   function(siblings) -> value, called as the node calls it; it
            may raise (a failure, reported with its input)
  opts.seed    number (1): the generated inputs depend only on it
  opts.runs    number (200): sibling sets generated per law
  opts.values  the values in the siblings: a name ("any" (default): small
               strings, numbers, booleans, lists and maps; "number",
               "integer", "string", "list" (a list of small scalars), "map",
               "counter" (PN-counter values, as lua/moor/counter.lua)), or
               function(rng) -> value (rng:int(lo, hi), rng:chance(p),
               rng:pick(list), rng:value(name))
  opts.laws    list of the laws to check (all three by default)
  opts.max_siblings  number (5): siblings in one generated set, at most
  opts.tombstones    false: no tombstone siblings (default: about 1 in 6)
  opts.stop    function() -> true to stop early (a time budget); the
               report then says how many runs were done
report = {
  runs = runs done, stopped = true when opts.stop ended it,
  failures = { {law = "commutative" | "associative" | "idempotent" | "error",
                input = {siblings...}, message = "..."}, ... },
  text = one line per failure (the law, the input, both results), or "ok ..."
}
At most one failure per law is reported (the first found).

resolver_names(t) and check_resolver(t, name, call, opts) check the
resolvers of a normalised config table t (lua/moor/config.lua:
t.resolver_checks holds each resolver's check options, the third argument
of moor.resolver; a plugin's are in M.PLUGINS); call(name, siblings) runs
the resolver as the node does.  check_resolver returns ok, text.  The node
(core/lua/laws.c) uses them for `moord --check` and before a reloaded
config goes live.

Pure Lua, no I/O, no globals, deterministic given the seed: runs in the
node's sandbox and under plain LuaJIT (busted).
]]

local type, pairs, ipairs, tostring, tonumber, error, pcall, select =
    type, pairs, ipairs, tostring, tonumber, error, pcall, select
local getmetatable, setmetatable, rawget = getmetatable, setmetatable, rawget
local format, concat, sort, floor = string.format, table.concat, table.sort, math.floor

local M = {}

M.LAWS = { "commutative", "associative", "idempotent" }
M.DEFAULT_RUNS = 200
M.MAX_RUNS = 100000

-- What the shipped resolver plugins are checked with (config.lua records
-- t.resolver_checks[short] = {plugin = "resolvers.<short>"}).
M.PLUGINS = {
    ["resolvers.lww"] = { values = "any" },
    ["resolvers.set_union"] = { values = "any" },
    ["resolvers.counter"] = { values = "counter" },
}

-- ---- a seeded generator -----------------------------------------------------
-- Park-Miller (minimal standard) on doubles: every product stays below
-- 2^53, so the sequence is exact and the same under any Lua.

local Rng = {}
Rng.__index = Rng

local MODULUS = 2147483647

local function new_rng(seed)
    local s = floor(tonumber(seed) or 1) % MODULUS
    if s <= 0 then
        s = s + MODULUS - 1
    end
    return setmetatable({ s = s }, Rng)
end

function Rng:next()
    self.s = (self.s * 16807) % MODULUS
    return self.s
end

-- An integer in lo..hi.
function Rng:int(lo, hi)
    return lo + self:next() % (hi - lo + 1)
end

function Rng:chance(p)
    return self:next() / MODULUS < p
end

function Rng:pick(list)
    return list[self:int(1, #list)]
end

local STRINGS = { "", "a", "b", "c", "ab", "ba", "abc", "zz", "\0", "\195\169" }
local FLOATS = { 0.5, -1.5, 2.25, 1e10 }
local KEYS = { "x", "y", "z", "n" }
local ACTORS = { "a", "b", "c" }

local gen = {}

function gen.integer(r)
    return r:int(-3, 6)
end

function gen.number(r)
    if r:chance(0.2) then
        return r:pick(FLOATS)
    end
    return gen.integer(r)
end

function gen.string(r)
    return r:pick(STRINGS)
end

local function scalar(r)
    local k = r:int(1, 5)
    if k == 1 then
        return r:chance(0.5)
    elseif k <= 3 then
        return gen.number(r)
    end
    return gen.string(r)
end

function gen.list(r)
    local t = {}
    for i = 1, r:int(0, 3) do
        t[i] = r:chance(0.5) and gen.integer(r) or gen.string(r)
    end
    return t
end

function gen.map(r)
    local t = {}
    for _ = 1, r:int(1, 3) do
        t[r:pick(KEYS)] = scalar(r)
    end
    return t
end

function gen.any(r)
    local k = r:int(1, 10)
    if k <= 6 then
        return scalar(r)
    elseif k <= 8 then
        return gen.list(r)
    end
    return gen.map(r)
end

function gen.counter(r)
    if r:chance(0.15) then
        return r:int(-3, 5) -- a plain number counts as the counter of "_"
    end
    local c = { p = {}, n = {} }
    for _ = 1, r:int(0, 3) do
        c.p[r:pick(ACTORS)] = r:int(0, 5)
    end
    for _ = 1, r:int(0, 2) do
        c.n[r:pick(ACTORS)] = r:int(0, 5)
    end
    return c
end

M.generators = gen

function Rng:value(name)
    local g = gen[name or "any"]
    if not g then
        error("moor.laws: no generator named '" .. tostring(name) .. "'", 2)
    end
    return g(self)
end

-- ---- comparing and showing values -------------------------------------------

local function show_key(k)
    if type(k) == "string" and k:match("^[%a_][%w_]*$") then
        return k
    end
    return nil
end

local show

-- Readable and canonical: equal values (as above) show the same, so the
-- text doubles as the equality test.  Keys sorted; -0 as 0; NaN as nan.
local function show_number(v)
    if v ~= v then
        return "nan"
    elseif v == 0 then
        return "0"
    elseif v == floor(v) and v > -1e15 and v < 1e15 then
        return format("%d", v)
    end
    return format("%.17g", v)
end

local function show_table(t, depth)
    if depth > 60 then
        return "{...}"
    end
    local mt = getmetatable(t)
    if type(mt) == "table" and (rawget(mt, "__name") == "moor.bin" or rawget(mt, "__name") == "msgpack.bin") then
        return show(t[1], depth + 1)
    end
    local n, count = 0, 0
    for k in pairs(t) do
        count = count + 1
        if type(k) ~= "number" or k < 1 or k ~= floor(k) then
            n = -1 -- a map
        elseif n >= 0 and k > n then
            n = k
        end
    end
    local parts = {}
    if n == count then -- an array (no holes)
        for i = 1, n do
            parts[i] = show(t[i], depth + 1)
        end
        return "{" .. concat(parts, ", ") .. "}"
    end
    for k, v in pairs(t) do
        local name = show_key(k)
        parts[#parts + 1] = (name or ("[" .. show(k, depth + 1) .. "]")) .. " = " .. show(v, depth + 1)
    end
    sort(parts)
    return "{" .. concat(parts, ", ") .. "}"
end

show = function(v, depth)
    local t = type(v)
    if t == "string" then
        return (format("%q", v):gsub("\\\n", "\\n"):gsub("%z", "\\0"))
    elseif t == "number" then
        return show_number(v)
    elseif t == "table" then
        return show_table(v, depth or 0)
    elseif t == "cdata" then
        return (tostring(v):gsub("U?LL$", ""))
    end
    return tostring(v)
end

M.show = show

function M.equal(a, b)
    return show(a) == show(b)
end

-- A sibling for messages: value (or tombstone), ts and dot; the clock is
-- the same for every sibling of a set and derived from the dots.
local function show_sibling(s)
    local head = s.tombstone and "tombstone = true" or ("value = " .. show(s.value))
    return "{" .. head .. ", ts = " .. show(s.ts) .. ", dot = " .. show(s.dot) .. "}"
end

local function show_siblings(list)
    local parts = {}
    for i, s in ipairs(list) do
        parts[i] = show_sibling(s)
    end
    return "{" .. concat(parts, ", ") .. "}"
end

M.show_siblings = show_siblings

-- ---- sibling sets -------------------------------------------------------------

local function deep_copy(v)
    if type(v) ~= "table" then
        return v
    end
    local t = {}
    for k, x in pairs(v) do
        t[deep_copy(k)] = deep_copy(x)
    end
    return t
end

local function new_set_state()
    return { counter = 0 }
end

-- A fresh dot: node ids n1..n3 and counters that only grow.
local function fresh_dot(r, st)
    st.counter = st.counter + r:int(1, 3)
    return { ["n" .. r:int(1, 3)] = st.counter }
end

local function make_sibling(r, st, values, tombstones)
    local s = { ts = 1000 + r:int(0, 4), dot = fresh_dot(r, st) }
    if tombstones and r:chance(1 / 6) then
        s.tombstone = true
    else
        s.tombstone = false
        s.value = values(r)
    end
    return s
end

-- Sets every sibling's clock to the max of the dots (as the node does:
-- the record's ctx, one clock for all).  Returns a fresh list of copies.
local function with_clock(list)
    local clock = {}
    for _, s in ipairs(list) do
        for id, c in pairs(s.dot) do
            if (clock[id] or 0) < c then
                clock[id] = c
            end
        end
    end
    local out = {}
    for i, s in ipairs(list) do
        local c = deep_copy(s)
        c.clock = deep_copy(clock)
        out[i] = c
    end
    return out
end

local function max_ts(list)
    local m = 0
    for _, s in ipairs(list) do
        if (tonumber(s.ts) or 0) > m then
            m = tonumber(s.ts)
        end
    end
    return m
end

-- A group's result as a sibling of a later merge.
local function as_sibling(result, group, r, st)
    return { value = result, tombstone = result == nil, ts = max_ts(group), dot = fresh_dot(r, st) }
end

local function slice(list, i, j)
    local out = {}
    for k = i, j do
        out[#out + 1] = list[k]
    end
    return out
end

local function join(...)
    local out = {}
    for i = 1, select("#", ...) do
        for _, s in ipairs((select(i, ...))) do
            out[#out + 1] = s
        end
    end
    return out
end

-- ---- the check ------------------------------------------------------------------

-- A Failure carries the law, the input and the message up to check().
local Failure = {}

local function failure(law, input, message)
    return setmetatable({ law = law, input = input, message = message }, Failure)
end

-- opts.stop said stop: raised by the guarded resolver, turned into this.
local STOP = {}
local STOP_FAILURE = setmetatable({}, Failure)

-- One line: control characters of a message as \ddd (\n for newlines).
local function oneline(s)
    return (s:gsub("\n", "\\n"):gsub("%c", function(c)
        return format("\\%03d", c:byte())
    end))
end

-- Calls resolve on a copy of list (so a resolver that changes its input
-- cannot change the next call's).  Raises a Failure when it raises.
local function run(resolve, list)
    local ok, res = pcall(resolve, with_clock(list))
    if not ok then
        if res == STOP then
            error(STOP_FAILURE, 0)
        end
        error(failure("error", list, "raised an error: " .. oneline(tostring(res)) .. "; siblings: " .. show_siblings(list)), 0)
    end
    return res
end

local function shuffled(r, list)
    local out = slice(list, 1, #list)
    for i = #out, 2, -1 do
        local j = r:int(1, i)
        out[i], out[j] = out[j], out[i]
    end
    return out
end

local checks = {}

function checks.commutative(resolve, r, st, set)
    if #set < 2 then
        return
    end
    local a = run(resolve, set)
    local rev = {}
    for i = #set, 1, -1 do
        rev[#rev + 1] = set[i]
    end
    for _, order in ipairs({ rev, shuffled(r, set) }) do
        local b = run(resolve, order)
        if not M.equal(a, b) then
            return failure("commutative", set, format(
                "not commutative: siblings %s give %s, but in the order %s give %s",
                show_siblings(set), show(a), show_siblings(order), show(b)))
        end
    end
end

function checks.associative(resolve, r, st, set)
    if #set < 2 then
        return
    end
    local all = run(resolve, set)
    -- resolve{resolve(G), rest...} == resolve(set), G a leading group
    local cut = r:int(1, #set - 1)
    local g, rest = slice(set, 1, cut), slice(set, cut + 1, #set)
    local rg = run(resolve, g)
    local grouped = run(resolve, join({ as_sibling(rg, g, r, st) }, rest))
    if not M.equal(all, grouped) then
        return failure("associative", set, format(
            "not associative: siblings %s give %s, but %s first (giving %s) and then the rest give %s",
            show_siblings(set), show(all), show_siblings(g), show(rg), show(grouped)))
    end
    if #set < 3 then
        return
    end
    -- resolve{resolve{a, b}, c} == resolve{a, resolve{b, c}}
    local a, b, c = set[1], set[2], set[3]
    local ab = run(resolve, { a, b })
    local bc = run(resolve, { b, c })
    local left = run(resolve, { as_sibling(ab, { a, b }, r, st), c })
    local right = run(resolve, { a, as_sibling(bc, { b, c }, r, st) })
    if not M.equal(left, right) then
        return failure("associative", { a, b, c }, format(
            "not associative: with siblings a, b, c = %s, resolve{resolve{a, b}, c} gives %s but resolve{a, resolve{b, c}} gives %s (resolve{a, b} = %s, resolve{b, c} = %s)",
            show_siblings({ a, b, c }), show(left), show(right), show(ab), show(bc)))
    end
end

function checks.idempotent(resolve, r, st, set)
    local one = set[1]
    local single = run(resolve, { one })
    local twice = { one, deep_copy(one) }
    twice[2].dot = fresh_dot(r, st)
    local double = run(resolve, twice)
    if not M.equal(single, double) then
        return failure("idempotent", twice, format(
            "not idempotent: the same sibling twice, %s, gives %s, but once gives %s",
            show_siblings(twice), show(double), show(single)))
    end
    local res = run(resolve, set)
    local again = run(resolve, { as_sibling(res, set, r, st) })
    if not M.equal(res, again) then
        return failure("idempotent", set, format(
            "not idempotent: siblings %s give %s, and resolving that value alone gives %s",
            show_siblings(set), show(res), show(again)))
    end
    local dup = join(set, { deep_copy(set[r:int(1, #set)]) })
    dup[#dup].dot = fresh_dot(r, st)
    local res2 = run(resolve, dup)
    if not M.equal(res, res2) then
        return failure("idempotent", dup, format(
            "not idempotent: siblings %s give %s, but with one of them repeated, %s, give %s",
            show_siblings(set), show(res), show_siblings(dup), show(res2)))
    end
end

local function values_of(opt)
    if opt == nil then
        return gen.any
    elseif type(opt) == "function" then
        return function(r)
            return opt(r)
        end
    elseif type(opt) == "string" and gen[opt] then
        return gen[opt]
    end
    error("moor.laws: values must be a generator name (any, number, integer, string, list, map, counter) or a function(rng), got " .. show(opt), 3)
end

local function laws_of(opt)
    if opt == nil then
        return M.LAWS
    end
    if type(opt) ~= "table" then
        error("moor.laws: laws must be a list of law names, got " .. type(opt), 3)
    end
    local out = {}
    for _, name in ipairs(M.LAWS) do
        for _, want in ipairs(opt) do
            if want == name then
                out[#out + 1] = name
            end
        end
    end
    for _, want in ipairs(opt) do
        if not checks[want] then
            error("moor.laws: unknown law " .. show(want) .. " (commutative, associative, idempotent)", 3)
        end
    end
    return out
end

function M.check(resolve, opts)
    if type(resolve) ~= "function" then
        error("moor.laws.check: expects a resolver function, got " .. type(resolve), 2)
    end
    opts = opts or {}
    local runs = floor(tonumber(opts.runs) or M.DEFAULT_RUNS)
    if runs < 1 or runs > M.MAX_RUNS then
        error(format("moor.laws.check: runs must be in 1..%d", M.MAX_RUNS), 2)
    end
    local values, want = values_of(opts.values), laws_of(opts.laws)
    local max_sib = floor(tonumber(opts.max_siblings) or 5)
    local tombstones = opts.tombstones ~= false
    local r, st = new_rng(opts.seed or 1), new_set_state()
    local report = { runs = 0, failures = {} }
    local failed = {}
    local stop = opts.stop
    local function guarded(s)
        if stop and stop() then
            error(STOP, 0)
        end
        return resolve(s)
    end
    for _ = 1, runs do
        local set = {}
        for i = 1, r:int(1, max_sib < 1 and 1 or max_sib) do
            set[i] = make_sibling(r, st, values, tombstones)
        end
        for _, law in ipairs(want) do
            if not failed[law] and not failed.error then
                local ok, f = pcall(checks[law], guarded, r, st, set)
                if not ok and getmetatable(f) ~= Failure then
                    error(f, 0) -- a bug of the generator or of this module: not the resolver's
                end
                if f == STOP_FAILURE then
                    report.stopped = true
                    break
                end
                if f then
                    failed[f.law] = true
                    report.failures[#report.failures + 1] = f
                end
            end
        end
        if report.stopped then
            break
        end
        report.runs = report.runs + 1
        if failed.error then
            break
        end
    end
    local lines = {}
    for i, f in ipairs(report.failures) do
        lines[i] = f.message
        setmetatable(f, nil)
    end
    if #lines == 0 then
        lines[1] = format("ok (%s; %d run%s%s)", concat(want, ", "), report.runs,
                          report.runs == 1 and "" or "s",
                          report.stopped and ", stopped at the check's time budget" or "")
    end
    report.text = concat(lines, "\n")
    return #report.failures == 0, report
end

-- The names of the resolvers of a normalised config table that have
-- check options (every moor.resolver and resolvers.* plugin; not the
-- autoscale policy), sorted.
function M.resolver_names(t)
    local names = {}
    for name in pairs(t.resolver_checks or {}) do
        if t.resolvers and t.resolvers[name] then
            names[#names + 1] = name
        end
    end
    sort(names)
    return names
end

-- Checks resolver name of config table t with its check options;
-- call(name, siblings) runs it as the node does.  opts: seed, runs (the
-- default), stop.  Returns ok, text.
function M.check_resolver(t, name, call, opts)
    opts = opts or {}
    local c = t.resolver_checks[name]
    if c.plugin then
        c = M.PLUGINS[c.plugin] or {}
    end
    local ok, res, report = pcall(M.check, function(siblings)
        return call(name, siblings)
    end, { seed = opts.seed, runs = c.runs or opts.runs, values = c.values, laws = c.laws,
           stop = opts.stop })
    if not ok then
        return false, "cannot be checked: " .. oneline(tostring(res))
    end
    return res, report.text
end

return M
