-- helpers.lua -- shared by the specs (loaded with dofile from the repo
-- root, where ctest runs busted): hex dumps and a deep equality that
-- treats NaN as equal to NaN, tells -0 from 0 and compares cdata by type
-- and value.
local ffi = require("ffi")

local M = {}

function M.hex(s)
    return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

function M.same(a, b)
    if type(a) ~= type(b) then
        return false
    end
    if type(a) == "number" then
        if a ~= a then
            return b ~= b
        end
        return a == b and (a ~= 0 or 1 / a == 1 / b)
    elseif type(a) == "cdata" then
        return tostring(ffi.typeof(a)) == tostring(ffi.typeof(b)) and a == b
    elseif type(a) ~= "table" then
        return a == b
    end
    for k, v in pairs(a) do
        if not M.same(v, b[k]) then
            return false
        end
    end
    for k in pairs(b) do
        if a[k] == nil then
            return false
        end
    end
    return true
end

return M
