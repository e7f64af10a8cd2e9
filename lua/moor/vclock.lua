--[[
moor.vclock -- the node's C vector clocks (core/cluster/vclock.h) from Lua,
through the LuaJIT FFI, so resolvers, tests and tools compare, merge and
decode clocks exactly as the node does.

For trusted code only.  It needs require("ffi"), which the handler
sandbox withholds (README, "Sandbox"): inside a node it loads only when the
config opts in with sandbox = {ffi = true}.  Plain LuaJIT (busted, tools)
always can.

Where the C functions come from: inside moord they are the process's own
symbols (moord is linked with exported symbols) and are reached through
ffi.C; elsewhere the module finds moor_core.so on package.cpath (built by
the moor_core target, which links in every vclock function) and
ffi.load()s it.  Requiring the module fails with a message when neither
has them.

    local vclock = require("moor.vclock")
    local a = vclock.new()
    a:increment("n1", 1700000000000)       -- id: 1..64 bytes; ts: wall ms
    local b = a:copy():increment("n2", 1700000000005)
    a:compare(b)                           --> "before"   (b descends from a)
    a:merge(b)                             -- a = pointwise max of a and b
    a:prune{max_entries = 10, max_age_ms = 86400000, keep_min = 3, now = ms}
    local s = a:encode()                   -- the ctx bytes clients carry
    local c, err = vclock.decode(s)        -- nil, "vclock: ..." if malformed
    vclock.new{{"n1", 3, 1700000000000}}   -- from entries {id, counter, ts}
    c:entries()                            --> {{id =, counter =, ts =}, ...}

compare answers "equal", "before" (self < other: other descends from
self), "after" (self descends from other) or "concurrent".  Counters and
timestamps are Lua numbers up to 2^53 and uint64_t cdata beyond.

Errors: wrong argument types raise; what C refuses at run time (a full
clock, a malformed encoding) is returned as nil, message.

Each clock holds a moor_vclock_t (about 5.7 KB) owned by the garbage
collector; clocks are plain values with no sharing, safe to use from any
coroutine of one Lua state.
]]

local ffi = require("ffi")

local type, tostring, tonumber, error, pcall, ipairs, setmetatable, getmetatable, select =
    type, tostring, tonumber, error, pcall, ipairs, setmetatable, getmetatable, select
local format, concat, floor = string.format, table.concat, math.floor

-- ---- C declarations (guarded: another module may have declared the types) --

if not pcall(ffi.typeof, "moor_buf_t") then
    ffi.cdef [[
typedef struct moor_buf {
    char *data;
    size_t len;
    size_t cap;
} moor_buf_t;
]]
end
if not pcall(ffi.typeof, "moor_vclock_t") then
    ffi.cdef [[
typedef struct moor_vc_entry {
    uint8_t idlen;
    char id[64];
    uint64_t counter;
    uint64_t ts;
} moor_vc_entry_t;
typedef struct moor_vclock {
    uint32_t n;
    moor_vc_entry_t e[64];
} moor_vclock_t;
]]
end
ffi.cdef [[
void moor_buf_free(moor_buf_t *b);
int moor_vclock_increment(moor_vclock_t *vc, const char *id, size_t idlen, uint64_t ts);
int moor_vclock_compare(const moor_vclock_t *a, const moor_vclock_t *b);
int moor_vclock_merge(moor_vclock_t *dst, const moor_vclock_t *src);
int moor_vclock_prune(moor_vclock_t *vc, uint32_t keep_min, uint32_t max_entries,
                      uint64_t max_age_ms, uint64_t now);
int moor_vclock_encode(const moor_vclock_t *vc, moor_buf_t *out);
int moor_vclock_decode(const char **p, const char *end, moor_vclock_t *vc);
const char *moor_diag_msg(int code);
]]

local ID_MAX, MAX_ENTRIES = 64, 64 -- MOOR_VC_ID_MAX, MOOR_VC_MAX_ENTRIES
local ORDER = { [0] = "equal", "before", "after", "concurrent" }
local SYMBOLS = {
    "moor_buf_free", "moor_vclock_increment", "moor_vclock_compare", "moor_vclock_merge",
    "moor_vclock_prune", "moor_vclock_encode", "moor_vclock_decode", "moor_diag_msg",
}

-- ---- finding the library ------------------------------------------------------

local function has_symbols(lib)
    return pcall(function()
        for _, name in ipairs(SYMBOLS) do
            local _ = lib[name]
        end
    end)
end

local function find_lib()
    if has_symbols(ffi.C) then
        return ffi.C
    end
    local path = package and package.searchpath and package.searchpath("moor_core", package.cpath)
    if not path then
        error("moor.vclock: the vector clock functions are not in this process and no moor_core.so "
              .. "is on package.cpath (" .. tostring(package and package.cpath) .. ")", 0)
    end
    local ok, lib = pcall(ffi.load, path)
    if not ok then
        error("moor.vclock: cannot load " .. path .. ": " .. tostring(lib), 0)
    end
    local found, err = has_symbols(lib)
    if not found then
        error("moor.vclock: " .. path .. " lacks the vector clock functions (" .. tostring(err)
              .. "); rebuild the moor_core target", 0)
    end
    return lib
end

local C = find_lib()

local VC = ffi.typeof("moor_vclock_t")
local BUF = ffi.typeof("moor_buf_t[1]")
local CURSOR = ffi.typeof("const char *[1]")
local U64 = ffi.typeof("uint64_t")
local TWO53 = 2 ^ 53

-- ---- helpers ---------------------------------------------------------------------

local function cerr(rc)
    return "vclock: " .. (ffi.string(C.moor_diag_msg(rc)):gsub("^vclock: ", ""))
end

-- A uint64_t as a Lua number when exact, else the cdata.
local function lua_u64(v)
    if v <= TWO53 then
        return tonumber(v)
    end
    return U64(v)
end

-- v as a uint64_t, or raise: what names the argument.
local function to_u64(v, what, min)
    local t = type(v)
    if t == "number" then
        if v ~= v or v ~= floor(v) or v < (min or 0) or v > TWO53 then
            error(format("moor.vclock: %s must be an integer in %d..2^53, got %s", what, min or 0,
                         tostring(v)), 3)
        end
        return v
    elseif t == "cdata" and tonumber(v) ~= nil then
        local ok, u = pcall(U64, v)
        if ok and u >= (min or 0) and (v >= 0) then
            return u
        end
    end
    error(format("moor.vclock: %s must be a non-negative integer, got %s", what, tostring(v)), 3)
end

local function check_id(id, level)
    if type(id) ~= "string" or #id == 0 or #id > ID_MAX then
        error(format("moor.vclock: node id must be a string of 1..%d bytes, got %s", ID_MAX,
                     type(id) == "string" and (#id .. " bytes") or type(id)), level + 1)
    end
end

-- ---- the clock object ---------------------------------------------------------------

local Clock = {}
Clock.__index = Clock

local function wrap(cv)
    return setmetatable({ cdata = cv }, Clock)
end

local function is_clock(x)
    return getmetatable(x) == Clock
end

local function check_clock(x, what)
    if not is_clock(x) then
        error(format("moor.vclock: %s must be a clock, got %s", what, type(x)), 3)
    end
end

-- Bumps id's counter (adding it at 1) and sets its ts (wall ms; default
-- now, second resolution).  Returns self, or nil, err (clock full).
function Clock:increment(id, ts)
    check_id(id, 2)
    if ts == nil then
        ts = os.time() * 1000
    end
    local rc = C.moor_vclock_increment(self.cdata, id, #id, to_u64(ts, "ts"))
    if rc ~= 0 then
        return nil, cerr(rc)
    end
    return self
end

-- "equal", "before", "after" or "concurrent": how self relates to other.
function Clock:compare(other)
    check_clock(other, "other")
    return ORDER[C.moor_vclock_compare(self.cdata, other.cdata)]
end

-- True when self descends from other (or equals it).
function Clock:descends(other)
    local o = self:compare(other)
    return o == "equal" or o == "after"
end

-- self = pointwise max of self and other.  Returns self, or nil, err
-- (the union would pass 64 entries; self unchanged).
function Clock:merge(other)
    check_clock(other, "other")
    local rc = C.moor_vclock_merge(self.cdata, other.cdata)
    if rc ~= 0 then
        return nil, cerr(rc)
    end
    return self
end

-- Drops the oldest entries while more than max_entries (default 64), and
-- entries older than now - max_age_ms while more than keep_min (default
-- 0) remain (max_age_ms default 0: no age limit; now is then required).
-- Returns how many were dropped.
function Clock:prune(opts)
    if opts == nil then
        opts = {}
    end
    if type(opts) ~= "table" then
        error("moor.vclock: prune takes a table {max_entries=, max_age_ms=, keep_min=, now=}, got "
              .. type(opts), 2)
    end
    local max_age = to_u64(opts.max_age_ms or 0, "max_age_ms")
    if max_age ~= 0 and opts.now == nil then
        error("moor.vclock: prune with max_age_ms needs now (wall ms)", 2)
    end
    local keep_min = to_u64(opts.keep_min or 0, "keep_min")
    local max_entries = to_u64(opts.max_entries or MAX_ENTRIES, "max_entries")
    if keep_min > 0xffffffff or max_entries > 0xffffffff then
        error("moor.vclock: keep_min and max_entries must fit in 32 bits", 2)
    end
    return tonumber(C.moor_vclock_prune(self.cdata, keep_min, max_entries, max_age,
                                        to_u64(opts.now or 0, "now")))
end

-- The MessagePack encoding (the ctx clients carry), or nil, err.
function Clock:encode()
    local buf = BUF()
    local rc = C.moor_vclock_encode(self.cdata, buf)
    if rc ~= 0 then
        C.moor_buf_free(buf)
        return nil, cerr(rc)
    end
    local s = ffi.string(buf[0].data, buf[0].len)
    C.moor_buf_free(buf)
    return s
end

-- An independent copy.
function Clock:copy()
    local cv = VC()
    ffi.copy(cv, self.cdata, ffi.sizeof(VC))
    return wrap(cv)
end

-- Number of entries.
function Clock:size()
    return tonumber(self.cdata.n)
end

-- {{id =, counter =, ts =}, ...} sorted by id (byte order, shorter first).
function Clock:entries()
    local out, cv = {}, self.cdata
    for i = 0, cv.n - 1 do
        local e = cv.e[i]
        out[i + 1] = { id = ffi.string(e.id, e.idlen), counter = lua_u64(e.counter), ts = lua_u64(e.ts) }
    end
    return out
end

-- The counter of id (0 when absent).
function Clock:get(id)
    check_id(id, 2)
    local cv = self.cdata
    for i = 0, cv.n - 1 do
        local e = cv.e[i]
        if e.idlen == #id and ffi.string(e.id, e.idlen) == id then
            return lua_u64(e.counter)
        end
    end
    return 0
end

function Clock.__eq(a, b)
    return C.moor_vclock_compare(a.cdata, b.cdata) == 0
end

function Clock:__tostring()
    local parts = {}
    for i, e in ipairs(self:entries()) do
        parts[i] = format("%q:%s@%s", e.id, (tostring(e.counter):gsub("U?LL$", "")),
                          (tostring(e.ts):gsub("U?LL$", "")))
    end
    return "vclock{" .. concat(parts, ", ") .. "}"
end

-- ---- the module -----------------------------------------------------------------------

local M = { ID_MAX = ID_MAX, MAX_ENTRIES = MAX_ENTRIES, is_clock = is_clock }

-- Entry e of new(): {id, counter, ts} or {id =, counter =, ts =}.
local function entry_fields(e, i)
    if type(e) ~= "table" then
        error(format("moor.vclock: entry %d must be a table {id, counter, ts}, got %s", i, type(e)), 3)
    end
    local id, counter, ts = e.id, e.counter, e.ts
    if id == nil then
        id, counter, ts = e[1], e[2], e[3]
    end
    check_id(id, 3)
    return id, to_u64(counter, "counter of entry " .. i, 1), to_u64(ts or 0, "ts of entry " .. i)
end

-- A clock: empty, or holding the given entries (any order, ids distinct,
-- counters >= 1, at most 64).
function M.new(entries)
    local cv = VC()
    if entries == nil then
        return wrap(cv)
    end
    if type(entries) ~= "table" then
        error("moor.vclock: new takes nil or a list of entries, got " .. type(entries), 2)
    end
    local list = {}
    for i, e in ipairs(entries) do
        local id, counter, ts = entry_fields(e, i)
        list[i] = { id = id, counter = counter, ts = ts }
    end
    if #list > MAX_ENTRIES then
        error(format("moor.vclock: %d entries (at most %d)", #list, MAX_ENTRIES), 2)
    end
    -- LuaJIT orders strings by bytes, shorter first on a common prefix:
    -- the order of vclock.h.
    table.sort(list, function(a, b) return a.id < b.id end)
    for i, e in ipairs(list) do
        if i > 1 and list[i - 1].id == e.id then
            error(format("moor.vclock: node id %q appears twice", e.id), 2)
        end
        local ce = cv.e[i - 1]
        ce.idlen = #e.id
        ffi.copy(ce.id, e.id, #e.id)
        ce.counter, ce.ts = e.counter, e.ts
    end
    cv.n = #list
    return wrap(cv)
end

-- A clock from its encoding (all of s), or nil, err.
function M.decode(s)
    if type(s) ~= "string" then
        error("moor.vclock: decode takes a string, got " .. type(s), 2)
    end
    local cv = VC()
    local cur = CURSOR()
    cur[0] = s
    local rc = C.moor_vclock_decode(cur, cur[0] + #s, cv)
    if rc ~= 0 then
        return nil, cerr(rc)
    end
    local used = tonumber(cur[0] - ffi.cast("const char *", s))
    if used ~= #s then
        return nil, format("vclock: %d bytes after the clock", #s - used)
    end
    return wrap(cv)
end

-- How a relates to b, for clocks or their encodings; nil, err when an
-- encoding is malformed.
function M.compare(a, b)
    local err
    if type(a) == "string" then
        a, err = M.decode(a)
        if not a then
            return nil, err
        end
    end
    if type(b) == "string" then
        b, err = M.decode(b)
        if not b then
            return nil, err
        end
    end
    check_clock(a, "a")
    return a:compare(b)
end

return M
