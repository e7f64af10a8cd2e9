--[[
moor.msgpack -- a pure-Lua MessagePack codec for LuaJIT, used by the Lua
client (moor.client) and usable on its own.

It follows the same mapping as the node's C codec, so that a value written
from Lua comes back from the node as the same Lua value:

  Lua                          MessagePack
  nil                          nil
  true / false                 true / false
  number, integral, |x|<=2^53  the smallest int/uint encoding
  number, otherwise            float64 (NaN, inf, -0.0, 0.5, 2^60 ...)
  int64_t / uint64_t cdata     int / uint (the smallest encoding)
  string, valid UTF-8          str
  string, not UTF-8            bin
  msgpack.bin(s)               bin, whatever s holds
  msgpack.ext(t, s)            ext (fixext 1/2/4/8/16 when the size fits)
  table, keys exactly 1..n     array
  table, empty                 array (an empty map must be msgpack.map({}))
  msgpack.map(t)               map, whatever its keys
  msgpack.array(t, n)          array of t[1..n], nils included
  other tables                 map

Decoding gives the inverse: integers within 2^53 as numbers, beyond that as
uint64_t (positive) or int64_t (negative) cdata; float32 and float64 as
numbers; str and bin both as strings; ext as msgpack.ext values
({ext = type, data = string}); arrays as tables (marked with msgpack.array
when they hold nils, so the length survives); maps as tables marked with
msgpack.map (so an empty map re-encodes as a map).  A nil map value drops
its key (Lua tables cannot hold it).

Errors.  encode(v) returns the bytes, or nil and a message for what cannot
be encoded (functions, userdata, other cdata, cycles, nesting over
max_depth).  decode(s) returns value, nil or nil, message -- check the
second result, since nil is a valid value.  decode_one(s, pos) decodes one
object from a stream and reports "need more bytes" (msgpack.NEED_MORE)
when the input is a truncated prefix, so the caller can read more and
retry.  Nothing here raises on bad input.

Requires LuaJIT (ffi for float and 64-bit integer bytes).  Not thread-bound:
the module keeps only constant tables and one scratch union.
]]

local ffi = require("ffi")

local byte, char, sub, find = string.byte, string.char, string.sub, string.find
local floor, huge = math.floor, math.huge
local concat = table.concat
local type, pairs, tostring, tonumber = type, pairs, tostring, tonumber
local setmetatable, getmetatable, rawget = setmetatable, getmetatable, rawget
local pcall, error, select = pcall, error, select

local M = {}

M.NEED_MORE = "need more bytes"
M.MAX_DEPTH = 128

local TWO53 = 2 ^ 53
local TWO32 = 2 ^ 32

local scratch = ffi.new("union { double d; float f; int64_t i; uint64_t u; uint8_t b[8]; }")
local little_endian = ffi.abi("le")
local int64_t = ffi.typeof("int64_t")
local uint64_t = ffi.typeof("uint64_t")

-- Markers -----------------------------------------------------------------

local map_mt = { __name = "msgpack.map" }
local bin_mt = { __name = "msgpack.bin" }
local ext_mt = { __name = "msgpack.ext" }
local array_mt_key = "msgpack.array" -- field of per-table array metatables

function bin_mt.__tostring(b)
    return b[1]
end

-- Marks t (or a new table) as a map; returns it.
function M.map(t)
    return setmetatable(t or {}, map_mt)
end

-- Marks t as an array of length n (default: the largest positive integer
-- key, 0 for an empty table); returns it.
function M.array(t, n)
    t = t or {}
    if n == nil then
        n = 0
        for k in pairs(t) do
            if type(k) == "number" and k > n and k == floor(k) then
                n = k
            end
        end
    end
    return setmetatable(t, { [array_mt_key] = n, __name = "msgpack.array" })
end

-- A value that always encodes as bin: {s}, like the node's moor.bin(s).
function M.bin(s)
    if type(s) ~= "string" then
        error("msgpack.bin: expected a string, got " .. type(s), 2)
    end
    return setmetatable({ s }, bin_mt)
end

-- An ext value: type in -128..127, data a string.
function M.ext(t, data)
    if type(t) ~= "number" or t ~= floor(t) or t < -128 or t > 127 then
        error("msgpack.ext: type must be an integer in -128..127", 2)
    end
    if type(data) ~= "string" then
        error("msgpack.ext: data must be a string, got " .. type(data), 2)
    end
    return setmetatable({ ext = t, data = data }, ext_mt)
end

function M.is_map(v)
    return type(v) == "table" and getmetatable(v) == map_mt
end

function M.is_bin(v)
    return type(v) == "table" and getmetatable(v) == bin_mt
end

function M.is_ext(v)
    return type(v) == "table" and getmetatable(v) == ext_mt
end

-- UTF-8 ---------------------------------------------------------------------

-- Strict RFC 3629: no overlong forms, no surrogates, nothing past U+10FFFF.
local function valid_utf8(s)
    if not find(s, "[\128-\255]") then
        return true
    end
    local i, n = 1, #s
    while i <= n do
        local c = byte(s, i)
        if c < 0x80 then
            i = i + 1
        else
            local need, lo, hi
            if c >= 0xC2 and c <= 0xDF then
                need, lo, hi = 1, 0x80, 0xBF
            elseif c == 0xE0 then
                need, lo, hi = 2, 0xA0, 0xBF
            elseif c == 0xED then
                need, lo, hi = 2, 0x80, 0x9F
            elseif c >= 0xE1 and c <= 0xEF then
                need, lo, hi = 2, 0x80, 0xBF
            elseif c == 0xF0 then
                need, lo, hi = 3, 0x90, 0xBF
            elseif c >= 0xF1 and c <= 0xF3 then
                need, lo, hi = 3, 0x80, 0xBF
            elseif c == 0xF4 then
                need, lo, hi = 3, 0x80, 0x8F
            else
                return false
            end
            if i + need > n then
                return false
            end
            local c2 = byte(s, i + 1)
            if c2 < lo or c2 > hi then
                return false
            end
            for j = i + 2, i + need do
                local cj = byte(s, j)
                if cj < 0x80 or cj > 0xBF then
                    return false
                end
            end
            i = i + need + 1
        end
    end
    return true
end

M.valid_utf8 = valid_utf8

-- Encoding ----------------------------------------------------------------

-- The 8 bytes of scratch, most significant first.
local function be_bytes8()
    local b = scratch.b
    if little_endian then
        return char(b[7], b[6], b[5], b[4], b[3], b[2], b[1], b[0])
    end
    return char(b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7])
end

local function u16(x)
    return char(floor(x / 256) % 256, x % 256)
end

local function u32(x)
    return char(floor(x / 16777216) % 256, floor(x / 65536) % 256, floor(x / 256) % 256, x % 256)
end

local function enc_uint(x) -- 0 <= x <= 2^53, integral
    if x < 128 then
        return char(x)
    elseif x < 256 then
        return char(0xcc, x)
    elseif x < 65536 then
        return "\205" .. u16(x)
    elseif x < TWO32 then
        return "\206" .. u32(x)
    end
    return "\207" .. u32(floor(x / TWO32)) .. u32(x % TWO32)
end

local function enc_int(x) -- -2^53 <= x < 0, integral
    if x >= -32 then
        return char(x + 256)
    elseif x >= -128 then
        return char(0xd0, x + 256)
    elseif x >= -32768 then
        return "\209" .. u16(x + 65536)
    elseif x >= -2147483648 then
        return "\210" .. u32(x + TWO32)
    end
    scratch.i = x
    return "\211" .. be_bytes8()
end

local function enc_double(x)
    scratch.d = x
    return "\203" .. be_bytes8()
end

local function enc_number(x)
    if x == floor(x) and x >= -TWO53 and x <= TWO53 and (x ~= 0 or 1 / x > 0) then
        if x >= 0 then
            return enc_uint(x)
        end
        return enc_int(x)
    end
    return enc_double(x)
end

local function enc_cdata(x)
    if ffi.istype(uint64_t, x) then
        if x <= TWO53 then
            return enc_uint(tonumber(x))
        end
        scratch.u = x
        return "\207" .. be_bytes8()
    elseif ffi.istype(int64_t, x) then
        if x >= -TWO53 and x <= TWO53 then
            return enc_number(tonumber(x))
        end
        scratch.i = x
        return (x < 0 and "\211" or "\207") .. be_bytes8()
    end
    return nil, "cannot encode " .. tostring(ffi.typeof(x))
end

local function enc_len(n, fix_base, fix_max, b8, b16, b32)
    if n <= fix_max and fix_base then
        return char(fix_base + n)
    elseif n < 256 and b8 then
        return char(b8, n)
    elseif n < 65536 then
        return char(b16) .. u16(n)
    elseif n < TWO32 then
        return char(b32) .. u32(n)
    end
    return nil
end

local function enc_str(s)
    if valid_utf8(s) then
        local h = enc_len(#s, 0xa0, 31, 0xd9, 0xda, 0xdb)
        return h and h .. s
    end
    local h = enc_len(#s, nil, -1, 0xc4, 0xc5, 0xc6)
    return h and h .. s
end

local function enc_bin(s)
    local h = enc_len(#s, nil, -1, 0xc4, 0xc5, 0xc6)
    return h and h .. s
end

local FIXEXT = { [1] = 0xd4, [2] = 0xd5, [4] = 0xd6, [8] = 0xd7, [16] = 0xd8 }

local function enc_ext(e)
    local t, d = e.ext, e.data
    local tb = char(t % 256)
    local f = FIXEXT[#d]
    if f then
        return char(f) .. tb .. d
    end
    local h = enc_len(#d, nil, -1, 0xc7, 0xc8, 0xc9)
    return h and h .. tb .. d
end

-- Array length of t, or nil when t must be a map.
local function array_len(t, mt)
    if mt then
        if mt == map_mt then
            return nil
        end
        local n = rawget(mt, array_mt_key)
        if n then
            return n
        end
    end
    local count, max = 0, 0
    for k in pairs(t) do
        if type(k) ~= "number" or k < 1 or k ~= floor(k) then
            return nil
        end
        count = count + 1
        if k > max then
            max = k
        end
    end
    if max ~= count then
        return nil
    end
    return count
end

local encode_value

local function enc_table(t, out, depth, seen)
    local mt = getmetatable(t)
    if mt == bin_mt then
        local s = enc_bin(t[1])
        if not s then
            return nil, "bin too long"
        end
        out[#out + 1] = s
        return true
    elseif mt == ext_mt then
        local s = enc_ext(t)
        if not s then
            return nil, "ext too long"
        end
        out[#out + 1] = s
        return true
    end
    if depth > M.MAX_DEPTH then
        return nil, "nesting deeper than " .. M.MAX_DEPTH .. " levels"
    end
    if seen[t] then
        return nil, "cannot encode a table that contains itself (cycle)"
    end
    seen[t] = true
    local n = array_len(t, mt)
    local ok, err = true, nil
    if n then
        out[#out + 1] = enc_len(n, 0x90, 15, nil, 0xdc, 0xdd)
        for i = 1, n do
            ok, err = encode_value(t[i], out, depth + 1, seen)
            if not ok then
                break
            end
        end
    else
        local count = 0
        for _ in pairs(t) do
            count = count + 1
        end
        out[#out + 1] = enc_len(count, 0x80, 15, nil, 0xde, 0xdf)
        for k, v in pairs(t) do
            ok, err = encode_value(k, out, depth + 1, seen)
            if not ok then
                break
            end
            ok, err = encode_value(v, out, depth + 1, seen)
            if not ok then
                break
            end
        end
    end
    seen[t] = nil
    return ok, err
end

function encode_value(v, out, depth, seen)
    local tv = type(v)
    local s, err
    if tv == "nil" then
        s = "\192"
    elseif tv == "boolean" then
        s = v and "\195" or "\194"
    elseif tv == "number" then
        s = enc_number(v)
    elseif tv == "string" then
        s = enc_str(v)
        if not s then
            return nil, "string too long"
        end
    elseif tv == "table" then
        return enc_table(v, out, depth, seen)
    elseif tv == "cdata" then
        s, err = enc_cdata(v)
        if not s then
            return nil, err
        end
    else
        return nil, "cannot encode a " .. tv
    end
    out[#out + 1] = s
    return true
end

-- Encodes v.  Returns the bytes, or nil and a message.
function M.encode(v)
    local out = {}
    local ok, err = encode_value(v, out, 1, {})
    if not ok then
        return nil, "msgpack.encode: " .. err
    end
    return concat(out)
end

-- Decoding ----------------------------------------------------------------
--
-- The decoder works on (s, pos) and raises a private error object on
-- truncated or malformed input; decode/decode_one catch it and turn it
-- into nil, message.  Before building anything, a complete object is found
-- with skip(), which allocates nothing, so a stream reader retrying on a
-- growing buffer pays only a scan for every attempt that is still short.

local NEED = setmetatable({}, { __tostring = function() return M.NEED_MORE end })

local function fail(fmt, ...)
    error({ msg = string.format(fmt, ...) }, 0)
end

local function need(s, pos, n)
    if pos + n - 1 > #s then
        error(NEED, 0)
    end
end

local function rd_u16(s, pos)
    need(s, pos, 2)
    local a, b = byte(s, pos, pos + 1)
    return a * 256 + b
end

local function rd_u32(s, pos)
    need(s, pos, 4)
    local a, b, c, d = byte(s, pos, pos + 3)
    return ((a * 256 + b) * 256 + c) * 256 + d
end

local function load_scratch(s, pos, k)
    need(s, pos, k)
    for j = 0, k - 1 do
        local v = byte(s, pos + j)
        -- Every union member starts at byte 0; little-endian stores the
        -- least significant byte there.
        scratch.b[little_endian and k - 1 - j or j] = v
    end
end

local function rd_uint64(s, pos)
    load_scratch(s, pos, 8)
    local u = scratch.u
    if u <= TWO53 then
        return tonumber(u)
    end
    return u -- a fresh boxed uint64_t
end

local function rd_int64(s, pos)
    load_scratch(s, pos, 8)
    local i = scratch.i
    if i >= -TWO53 and i <= TWO53 then
        return tonumber(i)
    end
    return i
end

-- Header of the object at pos: kind, length/value, header size.
-- kind: "v" (value in second result), "s" str, "b" bin, "a" array,
-- "m" map, "e" ext (length; type byte follows the length).
local function header(s, pos)
    need(s, pos, 1)
    local c = byte(s, pos)
    if c < 0x80 then
        return "v", c, 1
    elseif c >= 0xe0 then
        return "v", c - 256, 1
    elseif c < 0x90 then
        return "m", c - 0x80, 1
    elseif c < 0xa0 then
        return "a", c - 0x90, 1
    elseif c < 0xc0 then
        return "s", c - 0xa0, 1
    elseif c == 0xc0 then
        return "v", nil, 1
    elseif c == 0xc2 then
        return "v", false, 1
    elseif c == 0xc3 then
        return "v", true, 1
    elseif c == 0xc4 or c == 0xd9 then
        need(s, pos + 1, 1)
        return c == 0xc4 and "b" or "s", byte(s, pos + 1), 2
    elseif c == 0xc5 or c == 0xda then
        return c == 0xc5 and "b" or "s", rd_u16(s, pos + 1), 3
    elseif c == 0xc6 or c == 0xdb then
        return c == 0xc6 and "b" or "s", rd_u32(s, pos + 1), 5
    elseif c == 0xc7 then
        need(s, pos + 1, 1)
        return "e", byte(s, pos + 1), 2
    elseif c == 0xc8 then
        return "e", rd_u16(s, pos + 1), 3
    elseif c == 0xc9 then
        return "e", rd_u32(s, pos + 1), 5
    elseif c == 0xca then
        load_scratch(s, pos + 1, 4)
        return "v", tonumber(scratch.f), 5
    elseif c == 0xcb then
        load_scratch(s, pos + 1, 8)
        return "v", tonumber(scratch.d), 9
    elseif c == 0xcc then
        need(s, pos + 1, 1)
        return "v", byte(s, pos + 1), 2
    elseif c == 0xcd then
        return "v", rd_u16(s, pos + 1), 3
    elseif c == 0xce then
        return "v", rd_u32(s, pos + 1), 5
    elseif c == 0xcf then
        return "v", rd_uint64(s, pos + 1), 9
    elseif c == 0xd0 then
        need(s, pos + 1, 1)
        local v = byte(s, pos + 1)
        return "v", v >= 128 and v - 256 or v, 2
    elseif c == 0xd1 then
        local v = rd_u16(s, pos + 1)
        return "v", v >= 32768 and v - 65536 or v, 3
    elseif c == 0xd2 then
        local v = rd_u32(s, pos + 1)
        return "v", v >= 2147483648 and v - TWO32 or v, 5
    elseif c == 0xd3 then
        return "v", rd_int64(s, pos + 1), 9
    elseif c >= 0xd4 and c <= 0xd8 then
        return "e", 2 ^ (c - 0xd4), 1
    elseif c == 0xdc then
        return "a", rd_u16(s, pos + 1), 3
    elseif c == 0xdd then
        return "a", rd_u32(s, pos + 1), 5
    elseif c == 0xde then
        return "m", rd_u16(s, pos + 1), 3
    elseif c == 0xdf then
        return "m", rd_u32(s, pos + 1), 5
    end
    fail("invalid byte 0x%02x at offset %d", c, pos - 1)
end

-- Position after the object at pos, or raises NEED / a malformed error.
-- Iterative (a count of objects still to skip), so depth costs no stack.
local function skip(s, pos, max_depth)
    local pending = 1
    local stack = {} -- pending counts of enclosing containers
    while true do
        while pending == 0 do
            local nstack = #stack
            if nstack == 0 then
                return pos
            end
            pending = stack[nstack]
            stack[nstack] = nil
        end
        pending = pending - 1
        local kind, n, h = header(s, pos)
        pos = pos + h
        if kind == "s" or kind == "b" then
            need(s, pos, n)
            pos = pos + n
        elseif kind == "e" then
            need(s, pos, n + 1)
            pos = pos + n + 1
        elseif kind == "a" or kind == "m" then
            if #stack + 1 > max_depth then
                fail("nesting deeper than %d levels at offset %d", max_depth, pos - h - 1)
            end
            stack[#stack + 1] = pending
            pending = kind == "a" and n or 2 * n
        end
    end
end

local build

local function build_array(s, pos, n)
    local t = {}
    local has_nil = false
    for i = 1, n do
        local v
        v, pos = build(s, pos)
        if v == nil then
            has_nil = true
        end
        t[i] = v
    end
    if has_nil then
        M.array(t, n)
    end
    return t, pos
end

local function build_map(s, pos, n)
    local t = setmetatable({}, map_mt)
    for _ = 1, n do
        local k, v
        local kpos = pos
        k, pos = build(s, pos)
        v, pos = build(s, pos)
        if k == nil or k ~= k then
            fail("map key at offset %d is %s, which a Lua table cannot hold", kpos - 1,
                k == nil and "nil" or "NaN")
        end
        t[k] = v
    end
    return t, pos
end

-- The object at pos (known complete by skip) and the position after it.
function build(s, pos)
    local kind, v, h = header(s, pos)
    pos = pos + h
    if kind == "v" then
        return v, pos
    elseif kind == "s" or kind == "b" then
        return sub(s, pos, pos + v - 1), pos + v
    elseif kind == "e" then
        local t = byte(s, pos)
        return M.ext(t >= 128 and t - 256 or t, sub(s, pos + 1, pos + v)), pos + v + 1
    elseif kind == "a" then
        return build_array(s, pos, v)
    end
    return build_map(s, pos, v)
end

local function decode_at(s, pos, max_depth)
    local stop = skip(s, pos, max_depth)
    local v, after = build(s, pos)
    assert(after == stop, "msgpack: skip and build disagree")
    return v, after
end

local function catch(ok, a, b)
    if ok then
        return a, b
    end
    if a == NEED then
        return nil, nil, M.NEED_MORE
    end
    if type(a) == "table" and a.msg then
        return nil, nil, a.msg
    end
    error(a, 0) -- a bug in this module, not bad input
end

-- One object starting at byte pos (default 1).  Returns value, next_pos;
-- or nil, nil, err where err == msgpack.NEED_MORE when s ends inside the
-- object (a prefix of something valid so far), else a description.
-- opts.max_depth bounds nesting (default msgpack.MAX_DEPTH).
function M.decode_one(s, pos, opts)
    if type(s) ~= "string" then
        return nil, nil, "msgpack.decode_one: expected a string, got " .. type(s)
    end
    pos = pos or 1
    if pos > #s then
        return nil, nil, M.NEED_MORE
    end
    local max_depth = opts and opts.max_depth or M.MAX_DEPTH
    return catch(pcall(decode_at, s, pos, max_depth))
end

-- Exactly one object filling s.  Returns value, nil or nil, message.
function M.decode(s, opts)
    local v, nxt, err = M.decode_one(s, 1, opts)
    if err then
        if err == M.NEED_MORE then
            return nil, "msgpack.decode: truncated input (" .. err .. ")"
        end
        return nil, "msgpack.decode: " .. err
    end
    if nxt <= #s then
        return nil, string.format("msgpack.decode: %d trailing bytes after the object", #s - nxt + 1)
    end
    return v, nil
end

-- Stream reader: feed bytes as they arrive, take whole objects out.
--   local r = msgpack.reader{max_size = 64 * 1024 * 1024}
--   r:feed(chunk); local ok, v = r:next()
-- next() returns true, value; or false when more bytes are needed; or nil,
-- message for malformed input or an object over max_size (after which the
-- reader is unusable: a byte stream cannot be resynchronised).
local Reader = {}
Reader.__index = Reader

function M.reader(opts)
    opts = opts or {}
    return setmetatable({
        buf = "",
        pos = 1,
        max_size = opts.max_size or 64 * 1024 * 1024,
        max_depth = opts.max_depth or M.MAX_DEPTH,
        broken = nil,
    }, Reader)
end

function Reader:feed(chunk)
    if self.pos > 1 then
        self.buf = sub(self.buf, self.pos)
        self.pos = 1
    end
    self.buf = self.buf .. chunk
end

-- Bytes buffered and not yet returned as objects.
function Reader:buffered()
    return #self.buf - self.pos + 1
end

function Reader:next()
    if self.broken then
        return nil, self.broken
    end
    if self.pos > #self.buf then
        return false
    end
    local v, nxt, err = M.decode_one(self.buf, self.pos, { max_depth = self.max_depth })
    if err == M.NEED_MORE then
        if self:buffered() > self.max_size then
            self.broken = "object larger than " .. self.max_size .. " bytes"
            return nil, self.broken
        end
        return false
    elseif err then
        self.broken = err
        return nil, err
    end
    if nxt - self.pos > self.max_size then
        self.broken = "object larger than " .. self.max_size .. " bytes"
        return nil, self.broken
    end
    self.pos = nxt
    return true, v
end

return M
