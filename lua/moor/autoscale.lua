--[[
moor.autoscale -- the shipped scaling policy, and how the node reads any
policy's answer (README "Automatic scaling").

  moor.autoscale{
    check_s = 10,
    policy = require("moor.autoscale").default{ p99_ms = 50, rps_per_node = 20000 },
    add = "scripts/scaler.sh add", remove = "scripts/scaler.sh remove",
  }

A policy is function(cluster) -> answer [, reason], called every check_s on
one node (the lowest id that is up) with
  cluster = { nodes = { {id, status, addr, age_ms, load = {rps = {get, put,
              del, call, other, total}, p99_ms, bytes_stored,
              memtable_pressure, cache_pressure, cache_hit_rate,
              cpu_ms_per_s}}, ... },
              n = the largest n of the keyspaces, now_ms, self = the
              evaluating node's id }
(load is absent for a member whose figures have not arrived yet).  It
answers nil or "none" (nothing), "add", {add = true, reason = ...},
{remove = id, reason = ...}; a reason may also come as a second value.

M.default(opts) keeps its own history between calls: it answers "add"
when the largest p99 of the up nodes stayed over opts.p99_ms, or their
requests per second per node stayed over opts.rps_per_node, at every
check for window_s; and {remove = id} when both stayed under the low
marks (p99 under low_p99_ms, default half of p99_ms; requests per node
under low_rps_per_node) for window_s -- the gap between the high and the
low marks is the hysteresis that keeps it from flapping.  It never goes
below min_nodes (default: the cluster's n) nor above max_nodes; it
removes the up node with the highest id (natural order: n10 after n9),
never the evaluating node while another can go.  A change of the number
of up nodes, or a pause longer than the window between two calls,
restarts both windows: every decision is taken on a window of the
cluster as it is now.

Pure Lua: busted runs it directly.
]]

local type, ipairs, tostring, tonumber, error, next, math_max =
    type, ipairs, tostring, tonumber, error, next, math.max
local format = string.format

local M = {}

M.REASON_MAX = 200

local function reason_of(r)
    if r == nil then
        return nil
    end
    r = tostring(r)
    if #r > M.REASON_MAX then
        r = r:sub(1, M.REASON_MAX) .. "..."
    end
    return r
end

local function bad(answer)
    error(format("autoscale policy: the answer must be nil, \"none\", \"add\", {add = true} or "
                 .. "{remove = id}, got %s", type(answer) == "string" and format("%q", answer)
                 or type(answer)), 0)
end

-- The node's view of a policy's answer: {action = "none"|"add"|"remove",
-- node = id (remove), reason = text or nil}.  Raises on anything else.
function M.normalize(answer, reason)
    if answer == nil or answer == "none" then
        return { action = "none", reason = reason_of(reason) }
    elseif answer == "add" then
        return { action = "add", reason = reason_of(reason) }
    elseif type(answer) == "table" then
        local why = reason_of(answer.reason ~= nil and answer.reason or reason)
        if answer.remove ~= nil then
            local id = answer.remove
            if type(id) ~= "string" or #id == 0 or #id > 64 then
                error("autoscale policy: remove must be a node id (a string of 1..64 bytes)", 0)
            end
            return { action = "remove", node = id, reason = why }
        elseif answer.add then
            return { action = "add", reason = why }
        elseif answer.action == "none" or next(answer) == nil then
            return { action = "none", reason = why }
        end
    end
    bad(answer)
end

-- a < b in natural order: "n9" < "n10", then bytes.
function M.id_less(a, b)
    local pa, na = a:match("^(.-)(%d+)$")
    local pb, nb = b:match("^(.-)(%d+)$")
    if pa and pb and pa == pb and tonumber(na) ~= tonumber(nb) then
        return tonumber(na) < tonumber(nb)
    end
    return a < b
end

local function num(x)
    return type(x) == "number" and x or 0
end

-- Figures of the up members: list of up nodes, largest p99, requests/s
-- per up node; busy = a member is joining or leaving.
local function survey(cluster)
    local up, p99, total, busy = {}, 0, 0, false
    for _, nd in ipairs(cluster.nodes or {}) do
        if nd.status == "up" then
            up[#up + 1] = nd
            local l = nd.load
            if type(l) == "table" then
                p99 = math_max(p99, num(l.p99_ms))
                total = total + (type(l.rps) == "table" and num(l.rps.total) or 0)
            end
        elseif nd.status == "joining" or nd.status == "leaving" then
            busy = true
        end
    end
    return up, p99, #up > 0 and total / #up or 0, busy
end

-- The up node to remove: the highest id, the evaluating node only when it
-- is the last candidate.
local function victim(up, self)
    local best
    for _, nd in ipairs(up) do
        if nd.id ~= self and (best == nil or M.id_less(best, nd.id)) then
            best = nd.id
        end
    end
    return best or self
end

function M.default(opts)
    opts = opts or {}
    local p99_hi = opts.p99_ms or 50
    local p99_lo = opts.low_p99_ms or p99_hi / 2
    local rps_hi = opts.rps_per_node or 20000
    local rps_lo = opts.low_rps_per_node or 2000
    local window_s = opts.window_s or 30
    local window_ms = window_s * 1000
    local max_nodes = opts.max_nodes or 16
    local min_nodes = opts.min_nodes
    local st = {} -- over_since, under_since, last_ms, nup

    return function(cluster)
        local now = num(cluster.now_ms)
        local up, p99, per, busy = survey(cluster)
        if st.last_ms == nil or now - st.last_ms > window_ms or now < st.last_ms
            or st.nup ~= #up then
            st.over_since, st.under_since = nil, nil
        end
        st.last_ms, st.nup = now, #up
        if busy then -- a change is under way: its effect is not measurable yet
            st.over_since, st.under_since = nil, nil
            return "none", "a member is joining or leaving"
        end
        local over = p99 > p99_hi or per > rps_hi
        local under = p99 < p99_lo and per < rps_lo
        st.over_since = over and (st.over_since or now) or nil
        st.under_since = under and (st.under_since or now) or nil
        local figures = format("p99 %.1f ms, %.0f req/s per node on %d up node(s)", p99, per, #up)
        if st.over_since and now - st.over_since >= window_ms then
            if #up >= max_nodes then
                return "none", figures .. format(": over for %ds, but max_nodes = %d reached",
                                                 window_s, max_nodes)
            end
            st.over_since = nil
            return "add", figures .. format(": over p99_ms = %g or rps_per_node = %g for %ds",
                                            p99_hi, rps_hi, window_s)
        end
        if st.under_since and now - st.under_since >= window_ms then
            local floor_n = min_nodes or num(cluster.n)
            if floor_n < 1 then
                floor_n = 1
            end
            if #up <= floor_n then
                return "none", figures .. format(": under for %ds, but min_nodes = %d reached",
                                                 window_s, floor_n)
            end
            st.under_since = nil
            return { remove = victim(up, cluster.self),
                     reason = figures .. format(": under low_p99_ms = %g and low_rps_per_node = %g for %ds",
                                                p99_lo, rps_lo, window_s) }
        end
        return "none", figures
    end
end

return M
