--[[
handlers.incr -- a counter: incr(key, by?, opts?) -> n.

Enable with plugins = {"handlers.incr"}; clients then run
call("incr", key, by, opts).  opts may carry space, r, w and timeout_ms;
they go to the read (space, r, timeout_ms) and to the write (space, w,
timeout_ms).

What it does: reads the key, computes n = current + by (by defaults to 1;
a missing key counts as 0), writes n with the ctx of the read so that the
write supersedes every version it saw, and returns n.

Siblings: if concurrent writes left several values, the current value is
the largest of the numeric ones (non-numeric siblings are ignored when at
least one is numeric), and the write with the read's ctx collapses them
into one.  Two incr racing on the same key each read the same ctx, so the
node keeps both results as siblings; the next incr takes the max, which
loses one of the two increments.  That is the price of a counter on
vector clocks without a CRDT: use it for ids and rough counts, not money.

Errors (raised, so the caller gets HANDLER_ERROR with the message):
  by not a number; the stored value not a number ("incr: value at key is
  not a number"); a failed read or write (with the node's error).
Runs inside the node's coroutine: moor.get/moor.put yield while they wait.
]]

local type, tostring, ipairs = type, tostring, ipairs

-- A number, or an int64_t/uint64_t cdata (how the codec gives integers
-- beyond 2^53).
local function numeric(v)
    if type(v) == "number" then
        return true
    end
    return type(v) == "cdata" and tostring(v):find("^%-?%d+U?LL$") ~= nil
end

local pick = require("moor.values").pick

-- The value to add to: 0 for a missing key, else the max numeric sibling.
local function current(res)
    if res == nil or res.values == nil then
        return 0
    end
    local best, seen = nil, false
    for _, v in ipairs(res.values) do
        seen = true
        if numeric(v) and (best == nil or v > best) then
            best = v
        end
    end
    if best == nil then
        if seen then
            error("incr: value at key is not a number", 0)
        end
        return 0
    end
    return best
end

return function(key, by, opts)
    if by == nil then
        by = 1
    end
    if not numeric(by) then
        error("incr: by must be a number, got " .. type(by), 0)
    end
    if opts ~= nil and type(opts) ~= "table" then
        error("incr: opts must be a map, got " .. type(opts), 0)
    end
    local res, err = moor.get(key, pick(opts, nil, "space", "r", "timeout_ms"))
    if err then
        error("incr: get failed: " .. tostring(err), 0)
    end
    local n = current(res) + by
    local ok, perr = moor.put(key, n, pick(opts, res and res.ctx, "space", "w", "timeout_ms"))
    if not ok then
        error("incr: put failed: " .. tostring(perr), 0)
    end
    return n
end
