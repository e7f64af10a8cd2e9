--[[
moor.counter -- a PN-counter, the counter CRDT: concurrent increments and
decrements made anywhere in the cluster all survive siblings, partitions
and read repair, and every replica ends with the same total.

Representation (what is stored at the key, a MessagePack map):

    {p = {[id] = count, ...}, n = {[id] = count, ...}}

  * id: a non-empty string naming one writer (an "actor").
  * count: an integer in 0..2^53 -- everything that writer ever added
    (p) or subtracted (n).  Counts only grow.
  * The value of the counter is sum(p) - sum(n) (exact while both sums
    stay within 2^53).
  * p or n may be absent or empty; an empty one may arrive as an empty
    array (how MessagePack carries an empty Lua table) and is accepted.
    Any other key is an error.
  * A plain integer x is read as the counter the pseudo-actor "_" made:
    {p = {_ = x}} when x >= 0, {n = {_ = -x}} when x < 0.  This lets a key
    written as a plain number (e.g. by handlers.incr) become a counter; the
    first incr turns it into the map form.  Don't use "_" as an actor id.
  * nil (a live sibling with no value) is the zero counter.
Functions here always return fresh tables with both p and n present and
no zero counts (the canonical form); they never modify their arguments.

Merge: per id, the larger count, separately for p and n.  That is a join
(commutative, associative, idempotent), so siblings merge in any order,
any number of times, to the same counter.

The rule that makes it correct: one id is incremented from one place at a
time.  Two concurrent increments under the same id (say two handlers on
one node both reading p.n1 = 5 and writing 6 and 7) merge to the larger,
and the smaller increment is lost.  Give each concurrent writer its own
id: a client id, or a node id plus something unique per writer.  Ids are
never garbage-collected, so the counter grows with the number of writers.

    local counter = require("moor.counter")
    local c = counter.incr(cur, "client-42", 5)  -- cur: a counter, number or nil
    c = counter.decr(c, "client-42", 2)
    counter.value(c)                             --> 3 more than before
    counter.merge(a, b, ...)                     -- the join of counters
    counter.resolve(siblings)                    -- what resolvers.counter runs

Errors (malformed values, bad arguments) are raised as strings starting
with "counter" and naming what was wrong and where.

Pure functions: no I/O, no globals, safe in the handler sandbox.
]]

local type, pairs, ipairs, tostring, tonumber, error, select =
    type, pairs, ipairs, tostring, tonumber, error, select
local format, floor = string.format, math.floor

local M = {}

M.MAX = 2 ^ 53 -- largest count (and delta) handled exactly
M.PLAIN_ID = "_" -- the id a plain-number value is folded into

local function fail(fmt, ...)
    error(format(fmt, ...), 0)
end

local function show(v)
    if type(v) == "string" then
        return format("%q", v)
    end
    return tostring(v)
end

-- v as a Lua number when it is an integer in lo..hi (a number, or an
-- int64/uint64 cdata holding one), else nil.
local function as_int(v, lo, hi)
    local t = type(v)
    if t ~= "number" and t ~= "cdata" then
        return nil
    end
    local x = tonumber(v)
    if x == nil or x ~= x or x ~= floor(x) or x < lo or x > hi then
        return nil
    end
    if t == "cdata" and not (v == x) then
        return nil -- a cdata the conversion rounded
    end
    return x
end

-- Copies the half (p or n) t of value into dst, checked; where names the
-- value in errors.
local function read_half(dst, t, half, where)
    if t == nil then
        return
    end
    if type(t) ~= "table" then
        fail("counter: %s: %s is a %s, expected a map of id -> count", where, half, type(t))
    end
    for id, x in pairs(t) do
        if type(id) ~= "string" or id == "" then
            fail("counter: %s: %s has the key %s; ids must be non-empty strings", where, half,
                 show(id))
        end
        local v = as_int(x, 0, M.MAX)
        if v == nil then
            fail("counter: %s: %s[%s] is %s, expected an integer in 0..2^53", where, half, show(id),
                 show(x))
        end
        if v > 0 then
            dst[id] = v
        end
    end
end

-- A fresh canonical counter from a stored value; raises on anything that
-- is not a counter, a plain integer or nil.
local function normalize(v, where)
    local c = { p = {}, n = {} }
    local t = type(v)
    if t == "nil" then
        return c
    elseif t == "number" or t == "cdata" then
        local x = as_int(v, -M.MAX, M.MAX)
        if x == nil then
            fail("counter: %s is the number %s, expected an integer in -2^53..2^53", where, show(v))
        end
        if x > 0 then
            c.p[M.PLAIN_ID] = x
        elseif x < 0 then
            c.n[M.PLAIN_ID] = -x
        end
        return c
    elseif t ~= "table" then
        fail("counter: %s is a %s, expected a counter {p = {[id] = n}, n = {[id] = n}} or an integer",
             where, t)
    end
    for k in pairs(v) do
        if k ~= "p" and k ~= "n" then
            fail("counter: %s has the key %s; a counter has only p and n", where, show(k))
        end
    end
    read_half(c.p, v.p, "p", where)
    read_half(c.n, v.n, "n", where)
    return c
end

local function join_into(dst, src)
    for id, x in pairs(src) do
        local cur = dst[id]
        if cur == nil or x > cur then
            dst[id] = x
        end
    end
end

-- Returns a fresh counter {p = {}, n = {}}: value 0.
function M.new()
    return { p = {}, n = {} }
end

-- The canonical form of v (a counter, a plain integer or nil).
function M.normalize(v)
    return normalize(v, "value")
end

-- sum(p) - sum(n) of v (a counter, a plain integer or nil).
function M.value(v)
    local c = normalize(v, "value")
    local total = 0
    for _, x in pairs(c.p) do
        total = total + x
    end
    for _, x in pairs(c.n) do
        total = total - x
    end
    return total
end

-- A new counter: v plus delta counted for id (a negative delta counts in n).
function M.incr(v, id, delta)
    if delta == nil then
        delta = 1
    end
    if type(id) ~= "string" or id == "" then
        fail("counter.incr: id must be a non-empty string, got %s", show(id))
    end
    local d = as_int(delta, -M.MAX, M.MAX)
    if d == nil then
        fail("counter.incr: delta must be an integer in -2^53..2^53, got %s", show(delta))
    end
    local c = normalize(v, "value")
    local half, add = c.p, d
    if d < 0 then
        half, add = c.n, -d
    end
    local cur = half[id] or 0
    if cur > M.MAX - add then -- checked before adding: 2^53 + 1 rounds to 2^53
        fail("counter.incr: %s[%s] would pass 2^53", d >= 0 and "p" or "n", show(id))
    end
    if cur + add > 0 then
        half[id] = cur + add
    end
    return c
end

-- A new counter: v minus delta (default 1) counted for id.
function M.decr(v, id, delta)
    if delta == nil then
        delta = 1
    end
    local d = as_int(delta, -M.MAX, M.MAX)
    if d == nil then
        fail("counter.decr: delta must be an integer in -2^53..2^53, got %s", show(delta))
    end
    return M.incr(v, id, -d)
end

-- The join of any number of counter values (nil arguments are zero).
function M.merge(...)
    local out = { p = {}, n = {} }
    for i = 1, select("#", ...) do
        local c = normalize((select(i, ...)), "argument " .. i)
        join_into(out.p, c.p)
        join_into(out.n, c.n)
    end
    return out
end

-- True when a and b are the same counter (same per-id counts).
function M.equal(a, b)
    local x, y = normalize(a, "argument 1"), normalize(b, "argument 2")
    for _, h in ipairs({ "p", "n" }) do
        for id, v in pairs(x[h]) do
            if y[h][id] ~= v then
                return false
            end
        end
        for id in pairs(y[h]) do
            if x[h][id] == nil then
                return false
            end
        end
    end
    return true
end

-- The resolver: siblings {{value =, ts =, tombstone =}, ...} -> the join
-- of the live values, or nil when every sibling is a tombstone (or there
-- are none).  A delete concurrent with increments loses to them ("add
-- wins"); counts a deleted version held come back only through siblings
-- that still carry them.
function M.resolve(siblings)
    if type(siblings) ~= "table" then
        fail("counter: expected a list of siblings, got %s", type(siblings))
    end
    local out, live = { p = {}, n = {} }, false
    for i, s in ipairs(siblings) do
        if type(s) ~= "table" then
            fail("counter: sibling %d is a %s, expected a table", i, type(s))
        end
        if not s.tombstone then
            live = true
            local c = normalize(s.value, "sibling " .. i)
            join_into(out.p, c.p)
            join_into(out.n, c.n)
        end
    end
    return live and out or nil
end

return M
