--[[
handlers.cas -- compare-and-set against a ctx:
  cas(key, expected_ctx, new_value, opts?) -> {ok, ctx, values?}

Enable with plugins = {"handlers.cas"}; clients run
call("cas", key, expected_ctx, new_value, opts).  expected_ctx is the ctx
a get returned (nil means "the key must not exist"); opts may carry space,
r, w and timeout_ms.

If the key's current ctx equals expected_ctx (both absent counts as
equal), new_value is written with that ctx and the answer is
{ok = true, ctx = <ctx of the new version>}.  Otherwise nothing is written
and the answer is {ok = false, ctx = <current ctx or nil>,
values = <current values or nil>}, so the caller can retry from what it
got without another get.

Guarantee, precisely: the write carries the ctx that was compared, so it
never silently overwrites a version it did not see.  A write from
elsewhere that lands between this handler's read and its write (both
yield) is kept: the node stores the two as siblings and the next get shows
both.  cas does not lock.  Note that the ctx a put returns -- and so the
ctx of an ok answer -- covers the whole record, siblings included, like
every put's; a caller that must notice such a race reads the key (a get,
or a cas with the ctx it had) instead of chaining cas on returned ctxs.

Errors (raised, so the caller gets HANDLER_ERROR): expected_ctx neither a
string nor nil, opts not a map, a failed read or write.
]]

local type, tostring, ipairs = type, tostring, ipairs

local pick = require("moor.values").pick

return function(key, expected_ctx, new_value, opts)
    if expected_ctx ~= nil and type(expected_ctx) ~= "string" then
        error("cas: expected_ctx must be a ctx string or nil, got " .. type(expected_ctx), 0)
    end
    if opts ~= nil and type(opts) ~= "table" then
        error("cas: opts must be a map, got " .. type(opts), 0)
    end
    local res, err = moor.get(key, pick(opts, nil, "space", "r", "timeout_ms"))
    if err then
        error("cas: get failed: " .. tostring(err), 0)
    end
    local cur_ctx = res and res.ctx
    if cur_ctx ~= expected_ctx then
        return { ok = false, ctx = cur_ctx, values = res and res.values }
    end
    local put, perr = moor.put(key, new_value, pick(opts, cur_ctx, "space", "w", "timeout_ms"))
    if not put then
        error("cas: put failed: " .. tostring(perr), 0)
    end
    return { ok = true, ctx = put.ctx }
end
