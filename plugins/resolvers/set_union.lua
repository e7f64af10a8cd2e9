--[[
resolvers.set_union -- siblings are sets; the resolved value is their union.

Enable with plugins = {"resolvers.set_union"} and name it in a space:
moor.space("carts", {resolver = "set_union"}).  A shopping cart written
concurrently from two places keeps the items of both (Dynamo's example).

Input: the siblings of a key, { {value = ..., ts = ..., tombstone = ...}, ... }.
Output: one array, or nil when there is nothing live.

Rules:
  * A value that is an array (a table whose keys are all positive
    integers, holes allowed, or an empty table, and that the codec did not
    mark as a map) is a set of its elements; any other value, a map
    included (also an empty one or one with keys 1..n, when marked
    moor.map), is a one-element set.  A nil element
    or a nil value contributes nothing.
  * Equal elements appear once: strings, numbers and booleans by value
    (0 and -0.0 are one number), tables by structure (same keys, equal
    values, recursively; key order does not matter).
  * The result is sorted: booleans (false, true), then numbers (ascending,
    NaN last), then strings (byte order), then tables (by a canonical
    encoding).  So the result does not depend on sibling order, and
    resolving its own output again gives the same set (commutative,
    associative, idempotent: a state-based CRDT merge).
  * Deletes -- "add wins": a tombstone sibling contributes nothing.  If
    every sibling is a tombstone the key stays deleted (nil); if any live
    sibling remains, its elements survive a concurrent delete.  Likewise an
    element removed in one version and still present in a concurrent one
    comes back: to remove an element reliably, write the smaller set with
    the ctx of a get that has seen every sibling.
  * Live siblings whose sets are all empty resolve to an empty array.

Pure function of its input: no I/O, no globals, safe in the sandbox.
]]

local type, pairs, ipairs, tostring, tonumber = type, pairs, ipairs, tostring, tonumber
local getmetatable, rawget = getmetatable, rawget
local format, concat, sort = string.format, table.concat, table.sort

local canonical = require("moor.values").canonical

local RANK = { boolean = 1, number = 2, cdata = 2, string = 3, table = 4 }

-- Marker metatables (the node's codec names them moor.*, the client's
-- msgpack.*): a marked map, bin or ext is never an array.
local NOT_ARRAY = {
    ["moor.map"] = true, ["msgpack.map"] = true, ["moor.bin"] = true,
    ["msgpack.bin"] = true, ["moor.ext"] = true, ["msgpack.ext"] = true,
}

local function marker(v)
    local mt = getmetatable(v)
    return type(mt) == "table" and rawget(mt, "__name") or nil
end

-- Largest index of v when it is an array: not marked as a map, bin or ext,
-- and every key a positive integer (holes where the array held nil are
-- allowed).  Else nil.
local function array_len(v)
    if NOT_ARRAY[marker(v)] then
        return nil
    end
    local max = 0
    for k in pairs(v) do
        if type(k) ~= "number" or k < 1 or k ~= math.floor(k) then
            return nil
        end
        if k > max then
            max = k
        end
    end
    return max
end

local function entry(e)
    if e == 0 then
        e = 0
    end
    local t = type(e)
    local num = (t == "number" or t == "cdata") and tonumber(e) or nil
    return { v = e, key = canonical(e), rank = RANK[t] or 5, num = num, nan = num ~= nil and num ~= num }
end

local function less(a, b)
    if a.rank ~= b.rank then
        return a.rank < b.rank
    end
    if a.num ~= nil then
        if a.nan ~= b.nan then
            return b.nan
        end
        if not a.nan and a.num ~= b.num then
            return a.num < b.num
        end
    elseif a.rank == 3 and a.v ~= b.v then
        return a.v < b.v
    end
    return a.key < b.key
end

local function add(set, seen, e)
    if e == nil then
        return
    end
    local m = marker(e)
    if m == "moor.bin" or m == "msgpack.bin" then
        e = e[1] -- bytes forced to bin are, as elements, just their string
    end
    local en = entry(e)
    if not seen[en.key] then
        seen[en.key] = true
        set[#set + 1] = en
    end
end

return function(siblings)
    if type(siblings) ~= "table" then
        error("set_union: expected a list of siblings, got " .. type(siblings))
    end
    local set, seen, live = {}, {}, false
    for _, s in ipairs(siblings) do
        if type(s) ~= "table" then
            error("set_union: sibling is a " .. type(s) .. ", expected a table")
        end
        if not s.tombstone then
            live = true
            local v = s.value
            local n = type(v) == "table" and array_len(v)
            if n then
                for i = 1, n do
                    add(set, seen, v[i])
                end
            else
                add(set, seen, v)
            end
        end
    end
    if not live then
        return nil
    end
    sort(set, less)
    local out = {}
    for i, en in ipairs(set) do
        out[i] = en.v
    end
    return out
end
