--[[
moor.values -- helpers the bundled plugins share: a canonical encoding of
Lua values (for comparing and ordering them deterministically) and the
opts table a plugin passes on to moor.get/put.

Pure functions: no I/O, no globals, safe in the handler sandbox (require
reaches modules under lua/ and plugins/).
]]

local type, pairs, ipairs, tostring = type, pairs, ipairs, tostring
local format, concat, sort = string.format, table.concat, table.sort

local M = {}

-- A string that is equal for structurally equal values and orders
-- deterministically (not naturally) between different ones.  Type tag
-- first so that 1 and "1" differ; map keys sorted by their own encoding.
function M.canonical(v, depth)
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
            error("value nested deeper than 100 levels", 0)
        end
        local parts = {}
        for k, x in pairs(v) do
            parts[#parts + 1] = M.canonical(k, depth + 1) .. "=" .. M.canonical(x, depth + 1)
        end
        sort(parts)
        return "t" .. #parts .. "{" .. concat(parts, ",") .. "}"
    end
    return t .. ":" .. tostring(v)
end

-- The listed fields of opts, plus ctx when given; nil when that leaves
-- nothing (an empty Lua table would travel as an empty array, not a map).
function M.pick(opts, ctx, ...)
    local out, any = {}, false
    if opts then
        for _, k in ipairs({ ... }) do
            if opts[k] ~= nil then
                out[k], any = opts[k], true
            end
        end
    end
    if ctx ~= nil then
        out.ctx, any = ctx, true
    end
    return any and out or nil
end


return M
