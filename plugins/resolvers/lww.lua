--[[
resolvers.lww -- last writer wins.

Enable with plugins = {"resolvers.lww"} and name it in a space:
moor.space("sessions", {resolver = "lww"}).

The node calls the returned function with the siblings of a key,
{ {value = ..., ts = <wall ms>, tombstone = <bool>}, ... }, and stores what
it returns as the single surviving version (nil means "deleted").

Rule: the sibling with the highest ts wins.  Ties are broken the same way
on every node, whatever order the siblings come in:
  1. a tombstone beats a live value with the same ts (delete wins a tie,
     as in Cassandra), so a resolved delete is never undone by a write
     stamped in the same millisecond;
  2. between live values, the one whose canonical encoding (below) is
     greater wins.
A winning tombstone resolves to nil.  No siblings resolves to nil.

Caveat: wall clocks decide.  A node whose clock runs ahead wins writes it
should lose; use lww where that is acceptable (caches, sessions,
last-seen), and keep siblings or a merging resolver where it is not.

Pure function of its input: no I/O, no globals, safe in the sandbox.
]]

local type, pairs, ipairs, tostring, tonumber = type, pairs, ipairs, tostring, tonumber
local format, concat, sort = string.format, table.concat, table.sort

-- A string that is equal for structurally equal values and orders
-- deterministically (not naturally) between different ones.  Type tag
-- first so that 1 and "1" differ; map keys sorted by their own encoding.
local function canonical(v, depth)
    depth = depth or 0
    local t = type(v)
    if t == "nil" then
        return "z"
    elseif t == "boolean" then
        return v and "b1" or "b0"
    elseif t == "number" then
        if v ~= v then
            return "nnan"
        end
        if v == 0 then
            v = 0 -- -0.0 and 0.0 are one value here
        end
        return "n" .. format("%.17g", v)
    elseif t == "string" then
        return "s" .. #v .. ":" .. v
    elseif t == "cdata" then
        -- int64_t / uint64_t beyond 2^53, as the node's codec gives them
        return "n" .. tostring(v):gsub("U?LL$", "")
    elseif t == "table" then
        if depth > 100 then
            error("lww: value nested deeper than 100 levels")
        end
        local parts = {}
        for k, x in pairs(v) do
            parts[#parts + 1] = canonical(k, depth + 1) .. "=" .. canonical(x, depth + 1)
        end
        sort(parts)
        return "t" .. #parts .. "{" .. concat(parts, ",") .. "}"
    end
    return t .. ":" .. tostring(v)
end

local function ts_of(s)
    return tonumber(s.ts) or 0
end

-- True when sibling a beats sibling b.
local function beats(a, b, ka, kb)
    local ta, tb = ts_of(a), ts_of(b)
    if ta ~= tb then
        return ta > tb
    end
    if (a.tombstone and true or false) ~= (b.tombstone and true or false) then
        return a.tombstone and true or false
    end
    return ka > kb
end

return function(siblings)
    if type(siblings) ~= "table" then
        error("lww: expected a list of siblings, got " .. type(siblings))
    end
    local best, best_key
    for _, s in ipairs(siblings) do
        if type(s) ~= "table" then
            error("lww: sibling is a " .. type(s) .. ", expected a table")
        end
        local key = s.tombstone and "" or canonical(s.value)
        if best == nil or beats(s, best, key, best_key) then
            best, best_key = s, key
        end
    end
    if best == nil or best.tombstone then
        return nil
    end
    return best.value
end
