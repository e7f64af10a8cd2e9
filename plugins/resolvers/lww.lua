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

local canonical = require("moor.values").canonical

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
