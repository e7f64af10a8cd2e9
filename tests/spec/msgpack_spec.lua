-- Specs for lua/moor/msgpack.lua: exact encodings at every size boundary,
-- round trips of every type, the array/map rule, 64-bit integers, the
-- stream reader, and clear errors for malformed input and values that
-- cannot be encoded.

local mp = require("moor.msgpack")
local ffi = require("ffi")

local helpers = dofile("tests/spec/helpers.lua")
local hex, same = helpers.hex, helpers.same

local function unhex(h)
    return (h:gsub("%s", ""):gsub("..", function(x) return string.char(tonumber(x, 16)) end))
end


local function roundtrip(v)
    local s, err = mp.encode(v)
    assert.is_nil(err)
    local back, derr = mp.decode(s)
    assert.is_nil(derr)
    return back, s
end

describe("msgpack encode", function()
    local cases = {
        { "nil", nil, "c0" },
        { "false", false, "c2" },
        { "true", true, "c3" },
        { "0", 0, "00" },
        { "127", 127, "7f" },
        { "128", 128, "cc80" },
        { "255", 255, "ccff" },
        { "256", 256, "cd0100" },
        { "65535", 65535, "cdffff" },
        { "65536", 65536, "ce00010000" },
        { "2^32-1", 2 ^ 32 - 1, "ceffffffff" },
        { "2^32", 2 ^ 32, "cf0000000100000000" },
        { "2^53", 2 ^ 53, "cf0020000000000000" },
        { "-1", -1, "ff" },
        { "-32", -32, "e0" },
        { "-33", -33, "d0df" },
        { "-128", -128, "d080" },
        { "-129", -129, "d1ff7f" },
        { "-32768", -32768, "d18000" },
        { "-32769", -32769, "d2ffff7fff" },
        { "-2^31", -2 ^ 31, "d280000000" },
        { "-2^31-1", -2 ^ 31 - 1, "d3ffffffff7fffffff" },
        { "-2^53", -2 ^ 53, "d3ffe0000000000000" },
        { "1.5", 1.5, "cb3ff8000000000000" },
        { "-0.0", -0.0, "cb8000000000000000" },
        { "2^53+2 as float", 2 ^ 53 + 2, "cb4340000000000001" },
        { "inf", math.huge, "cb7ff0000000000000" },
        { "uint64 max", 18446744073709551615ULL, "cfffffffffffffffff" },
        { "int64 min", -9223372036854775807LL - 1, "d38000000000000000" },
        { "small int64 cdata", 5LL, "05" },
        { "small negative int64 cdata", -200LL, "d1ff38" },
        { "empty string", "", "a0" },
        { "fixstr", "abc", "a3616263" },
        { "bin forced", mp.bin("abc"), "c403616263" },
        { "not utf8 -> bin", "\255\254", "c402fffe" },
        { "empty array", {}, "90" },
        { "empty map", mp.map(), "80" },
        { "array", { 1, 2, 3 }, "93010203" },
        { "one-key map", { a = 1 }, "81a16101" },
        { "holey table is a map", { [2] = 7 }, "810207" },
        { "array with nil", mp.array({ 1, nil, 3 }, 3), "9301c003" },
        { "fixext1", mp.ext(5, "x"), "d40578" },
        { "fixext2", mp.ext(-1, "xy"), "d5ff7879" },
        { "fixext4", mp.ext(1, "abcd"), "d60161626364" },
        { "fixext8", mp.ext(1, string.rep("a", 8)), "d701" .. string.rep("61", 8) },
        { "fixext16", mp.ext(1, string.rep("a", 16)), "d801" .. string.rep("61", 16) },
        { "ext8", mp.ext(2, "abc"), "c70302616263" },
        { "ext8 empty", mp.ext(2, ""), "c70002" },
    }
    for _, c in ipairs(cases) do
        it("encodes " .. c[1], function()
            local s, err = mp.encode(c[2])
            assert.is_nil(err)
            assert.are.equal(c[3], hex(s))
        end)
    end

    it("picks str8/str16/str32 at the boundaries", function()
        local function head(n)
            return hex(mp.encode(string.rep("a", n)):sub(1, 5))
        end
        assert.are.equal("bf616161", head(31):sub(1, 8))
        assert.are.equal("d920", head(32):sub(1, 4))
        assert.are.equal("d9ff", head(255):sub(1, 4))
        assert.are.equal("da0100", head(256):sub(1, 6))
        assert.are.equal("daffff", head(65535):sub(1, 6))
        assert.are.equal("db00010000", head(65536))
    end)

    it("picks bin8/bin16/bin32 at the boundaries", function()
        local function head(n)
            return hex(mp.encode(mp.bin(string.rep("a", n))):sub(1, 5))
        end
        assert.are.equal("c4ff", head(255):sub(1, 4))
        assert.are.equal("c50100", head(256):sub(1, 6))
        assert.are.equal("c5ffff", head(65535):sub(1, 6))
        assert.are.equal("c600010000", head(65536))
    end)

    it("picks fixarray/array16/array32 and fixmap/map16/map32", function()
        local function arr(n)
            local t = {}
            for i = 1, n do
                t[i] = 0
            end
            return t
        end
        local function map(n)
            local t = {}
            for i = 1, n do
                t["k" .. i] = 0
            end
            return t
        end
        assert.are.equal("9f", hex(mp.encode(arr(15)):sub(1, 1)))
        assert.are.equal("dc0010", hex(mp.encode(arr(16)):sub(1, 3)))
        assert.are.equal("dcffff", hex(mp.encode(arr(65535)):sub(1, 3)))
        assert.are.equal("dd00010000", hex(mp.encode(arr(65536)):sub(1, 5)))
        assert.are.equal("8f", hex(mp.encode(map(15)):sub(1, 1)))
        assert.are.equal("de0010", hex(mp.encode(map(16)):sub(1, 3)))
        assert.are.equal("df00010000", hex(mp.encode(map(65536)):sub(1, 5)))
    end)

    it("tells valid UTF-8 from invalid", function()
        assert.is_true(mp.valid_utf8("h\195\169llo \226\130\172 \240\159\152\128"))
        assert.is_false(mp.valid_utf8("\192\128"))         -- overlong NUL
        assert.is_false(mp.valid_utf8("\237\160\128"))     -- surrogate
        assert.is_false(mp.valid_utf8("\244\144\128\128")) -- past U+10FFFF
        assert.is_false(mp.valid_utf8("\226\130"))         -- truncated
        assert.is_false(mp.valid_utf8("\128"))             -- lone continuation
    end)

    it("refuses what it cannot encode, saying what", function()
        local cases = {
            { function() end, "cannot encode a function" },
            { { f = print }, "cannot encode a function" },
            { coroutine.create(function() end), "cannot encode a thread" },
            { io.stdout, "cannot encode a userdata" },
            { ffi.new("int[2]"), "cannot encode ctype<int %[2%]>" },
        }
        for _, c in ipairs(cases) do
            local s, err = mp.encode(c[1])
            assert.is_nil(s)
            assert.is_truthy(err:find(c[2]), err)
        end
        local cyc = {}
        cyc[1] = cyc
        local s, err = mp.encode(cyc)
        assert.is_nil(s)
        assert.is_truthy(err:find("cycle"), err)
        local deep = {}
        local cur = deep
        for _ = 1, mp.MAX_DEPTH do
            cur[1] = {}
            cur = cur[1]
        end
        s, err = mp.encode(deep)
        assert.is_nil(s)
        assert.is_truthy(err:find("nesting deeper than"), err)
    end)

    it("allows the same table twice when it is not a cycle", function()
        local shared = { 1, 2 }
        assert.are.equal("92920102920102", hex(mp.encode({ shared, shared })))
    end)
end)

describe("msgpack decode", function()
    it("decodes every integer width, signed and unsigned", function()
        local cases = {
            { "00", 0 }, { "7f", 127 }, { "ff", -1 }, { "e0", -32 },
            { "cc80", 128 }, { "cd0100", 256 }, { "ce00010000", 65536 },
            { "cf0000000100000000", 2 ^ 32 }, { "d0df", -33 }, { "d1ff7f", -129 },
            { "d2ffff7fff", -32769 }, { "d3ffffffff7fffffff", -2 ^ 31 - 1 },
            -- non-canonical but valid encodings
            { "cc01", 1 }, { "d0 01", 1 }, { "d3 0000000000000001", 1 },
            { "cf0020000000000000", 2 ^ 53 }, { "d3ffe0000000000000", -2 ^ 53 },
        }
        for _, c in ipairs(cases) do
            local v, err = mp.decode(unhex(c[1]))
            assert.is_nil(err)
            assert.are.equal(c[2], v)
        end
    end)

    it("gives cdata beyond 2^53 and numbers within", function()
        local v = mp.decode(unhex("cf0020000000000001"))
        assert.are.equal("cdata", type(v))
        assert.is_true(ffi.istype("uint64_t", v))
        assert.are.equal(9007199254740993ULL, v)
        v = mp.decode(unhex("d3ffdfffffffffffff"))
        assert.is_true(ffi.istype("int64_t", v))
        assert.are.equal(-9007199254740993LL, v)
        v = mp.decode(unhex("cfffffffffffffffff"))
        assert.are.equal(18446744073709551615ULL, v)
    end)

    it("decodes float32 and float64", function()
        assert.are.equal(1.5, mp.decode(unhex("ca3fc00000")))
        assert.are.equal(-2.25, mp.decode(unhex("cbc002000000000000")))
        local nan = mp.decode(unhex("cb7ff8000000000000"))
        assert.is_true(nan ~= nan)
    end)

    it("decodes str and bin both as strings, ext as msgpack.ext", function()
        assert.are.equal("abc", mp.decode(unhex("d903616263")))
        assert.are.equal("abc", mp.decode(unhex("da0003616263")))
        assert.are.equal("abc", mp.decode(unhex("db00000003616263")))
        assert.are.equal("abc", mp.decode(unhex("c403616263")))
        assert.are.equal("abc", mp.decode(unhex("c50003616263")))
        assert.are.equal("abc", mp.decode(unhex("c600000003616263")))
        local e = mp.decode(unhex("c9000000037f616263"))
        assert.is_true(mp.is_ext(e))
        assert.are.equal(127, e.ext)
        assert.are.equal("abc", e.data)
        e = mp.decode(unhex("d6ff00000000")) -- timestamp 32
        assert.are.equal(-1, e.ext)
        assert.are.equal("\0\0\0\0", e.data)
    end)

    it("marks maps, so an empty map stays a map", function()
        local m = mp.decode(unhex("80"))
        assert.is_true(mp.is_map(m))
        assert.are.equal("80", hex(mp.encode(m)))
        local a = mp.decode(unhex("90"))
        assert.is_false(mp.is_map(a))
        assert.are.equal("90", hex(mp.encode(a)))
        -- a map whose keys happen to be 1..n stays a map too
        assert.are.equal("8101a161", hex(mp.encode(mp.decode(unhex("8101a161")))))
    end)

    it("keeps the length of arrays that hold nil", function()
        local t = mp.decode(unhex("93c001c0"))
        assert.are.equal(nil, t[1])
        assert.are.equal(1, t[2])
        assert.are.equal("93c001c0", hex(mp.encode(t)))
    end)

    it("decodes array16/32 and map16/32 headers", function()
        assert.are.same({ 1, 2 }, mp.decode(unhex("dc00020102")))
        assert.are.same({ 1, 2 }, mp.decode(unhex("dd000000020102")))
        assert.are.equal(1, mp.decode(unhex("de0001a16101")).a)
        assert.are.equal(1, mp.decode(unhex("df00000001a16101")).a)
    end)

    it("reports truncation at every cut of a valid object", function()
        local s = mp.encode({ a = { 1, 2.5, "xyz", mp.bin("\0\1"), mp.ext(3, "q"), 2 ^ 40, -2 ^ 40 },
            b = true, [7] = mp.map() })
        for cut = 0, #s - 1 do
            local v, nxt, err = mp.decode_one(s:sub(1, cut))
            assert.is_nil(v)
            assert.is_nil(nxt)
            assert.are.equal(mp.NEED_MORE, err)
        end
        local v, nxt, err = mp.decode_one(s)
        assert.is_nil(err)
        assert.are.equal(#s + 1, nxt)
        assert.are.equal(true, v.b)
    end)

    it("rejects malformed input with a clear message", function()
        local cases = {
            { "c1", "invalid byte 0xc1 at offset 0" },
            { "92 01 c1", "invalid byte 0xc1 at offset 2" },
            { "81 c0 01", "map key at offset 1 is nil" },
            { "81 cb7ff8000000000000 01", "is NaN" },
            { "01 02", "1 trailing bytes" },
            { "a3 6161", "truncated input" },
            { "", "truncated input" },
        }
        for _, c in ipairs(cases) do
            local v, err = mp.decode(unhex(c[1]))
            assert.is_nil(v)
            assert.is_truthy(err and err:find(c[2], 1, true), tostring(err) .. " vs " .. c[2])
        end
        local v, err = mp.decode(42)
        assert.is_nil(v)
        assert.is_truthy(err:find("expected a string"), err)
    end)

    it("bounds nesting depth on decode", function()
        local s = string.rep("\145", 200) .. "\192" -- 200 nested one-element arrays
        local v, err = mp.decode(s)
        assert.is_nil(v)
        assert.is_truthy(err:find("nesting deeper than 128"), err)
        v, err = mp.decode(string.rep("\145", 128) .. "\192")
        assert.is_nil(err)
        assert.is_not_nil(v)
    end)

    it("survives random garbage without raising", function()
        math.randomseed(tonumber(os.getenv("MOOR_SEED") or "") or 12345)
        for _ = 1, 3000 do
            local n = math.random(0, 24)
            local bytes = {}
            for i = 1, n do
                bytes[i] = math.random(0, 255)
            end
            local s = string.char(unpack(bytes))
            local ok, v, err = pcall(mp.decode, s)
            assert.is_true(ok, v)
            if err == nil then
                -- whatever decoded must encode again
                local again = mp.encode(v)
                assert.is_string(again)
            end
        end
    end)
end)

describe("msgpack round trips", function()
    it("round-trips scalars at every boundary", function()
        local vals = { true, false, 0, 1, 127, 128, 255, 256, 65535, 65536, 2 ^ 32 - 1, 2 ^ 32,
            2 ^ 53, -1, -32, -33, -128, -129, -32768, -32769, -2 ^ 31, -2 ^ 31 - 1, -2 ^ 53,
            0.5, -0.0, 1e300, -1e-300, math.huge, -math.huge, 0 / 0, 2 ^ 60, 3.14159,
            "", "a", string.rep("x", 31), string.rep("x", 32), string.rep("x", 255),
            string.rep("x", 256), string.rep("x", 65535), string.rep("x", 65536),
            "caf\195\169", "\0\1\2\255" }
        for _, v in ipairs(vals) do
            local back = roundtrip(v)
            assert.is_true(same(v, back), tostring(v) .. " came back as " .. tostring(back))
        end
    end)

    it("round-trips 64-bit integer cdata", function()
        local vals = { 2 ^ 53 + 1, 18446744073709551615ULL, 9223372036854775808ULL,
            -9223372036854775807LL - 1, -9007199254740993LL }
        vals[1] = 9007199254740993ULL
        for _, v in ipairs(vals) do
            local back = roundtrip(v)
            assert.are.equal("cdata", type(back))
            assert.is_true(v == back, tostring(v) .. " came back as " .. tostring(back))
        end
        -- a positive int64 beyond 2^53 comes back as the same value, as uint64
        local back = roundtrip(9007199254740993LL)
        assert.is_true(ffi.istype("uint64_t", back))
        assert.is_true(back == 9007199254740993ULL)
    end)

    it("round-trips nested structures", function()
        local v = {
            name = "moor", list = { 1, 2, { 3, { 4, { 5 } } } }, empty = {}, emap = mp.map(),
            [1.5] = "float key", [true] = "bool key", blob = "\0\255",
            ext = mp.ext(-5, "data"), big = 18446744073709551615ULL,
        }
        local back = roundtrip(v)
        assert.is_true(same(v, back))
        assert.is_true(mp.is_map(back.emap))
        assert.is_false(mp.is_map(back.empty))
        assert.is_true(mp.is_ext(back.ext))
    end)

    it("re-encodes decoded bytes identically", function()
        local inputs = { "93c001c0", "80", "90", "d6ff00000000", "cf0020000000000001",
            "d3ffdfffffffffffff", "c402fffe", "82a161c3a162c2", "dc0000", "de0000" }
        for _, h in ipairs(inputs) do
            local v = mp.decode(unhex(h))
            local want = unhex(h)
            if h == "dc0000" then
                want = unhex("90") -- array16 of 0 re-encodes in canonical form
            elseif h == "de0000" then
                want = unhex("80")
            end
            local got = mp.encode(v)
            if h == "82a161c3a162c2" then
                -- key order of a Lua table is unspecified; compare by value
                assert.is_true(same(mp.decode(got), v))
            else
                assert.are.equal(hex(want), hex(got))
            end
        end
    end)

    it("round-trips random values", function()
        math.randomseed(tonumber(os.getenv("MOOR_SEED") or "") or 777)
        local function gen(depth)
            local r = math.random(1, depth > 3 and 7 or 9)
            if r == 1 then
                return math.random(-2 ^ 31, 2 ^ 31)
            elseif r == 2 then
                return (math.random() - 0.5) * 10 ^ math.random(-20, 20)
            elseif r == 3 then
                local n = math.random(0, 40)
                local b = {}
                for i = 1, n do
                    b[i] = math.random(0, 255)
                end
                return string.char(unpack(b))
            elseif r == 4 then
                return math.random(0, 1) == 1
            elseif r == 5 then
                return string.rep("w", math.random(0, 300))
            elseif r == 6 then
                return mp.ext(math.random(-128, 127), string.rep("e", math.random(0, 20)))
            elseif r == 7 then
                return math.random(0, 2 ^ 20) * 2 ^ 32 + math.random(0, 2 ^ 31)
            elseif r == 8 then
                local t = {}
                for i = 1, math.random(0, 6) do
                    t[i] = gen(depth + 1)
                end
                return t
            end
            local t = mp.map()
            for _ = 1, math.random(0, 6) do
                t["k" .. math.random(1, 100)] = gen(depth + 1)
            end
            return t
        end
        for _ = 1, 500 do
            local v = gen(0)
            local back = roundtrip(v)
            assert.is_true(same(v, back))
        end
    end)
end)

describe("msgpack reader", function()
    it("returns whole objects from chunks of any size", function()
        local objs = { 1, "two", { 3, 3, 3 }, mp.map({ four = 4 }), mp.bin("\0\0\0"), nil, 2 ^ 40 }
        local wire = {}
        for i = 1, 7 do
            wire[i] = mp.encode(objs[i])
        end
        wire = table.concat(wire)
        for step = 1, 9 do
            local r = mp.reader()
            local got = {}
            local count = 0
            for i = 1, #wire, step do
                r:feed(wire:sub(i, i + step - 1))
                while true do
                    local ok, v = r:next()
                    assert.is_not_nil(ok, v)
                    if not ok then
                        break
                    end
                    count = count + 1
                    got[count] = v
                end
            end
            assert.are.equal(7, count)
            for i = 1, 7 do
                -- bin comes back as a plain string
                local want = mp.is_bin(objs[i]) and objs[i][1] or objs[i]
                assert.is_true(same(want, got[i]), "object " .. i .. " with step " .. step)
            end
            assert.are.equal(0, r:buffered())
        end
    end)

    it("fails for good on malformed bytes", function()
        local r = mp.reader()
        r:feed("\1\193\1")
        local ok, v = r:next()
        assert.is_true(ok)
        assert.are.equal(1, v)
        ok, v = r:next()
        assert.is_nil(ok)
        assert.is_truthy(v:find("0xc1"), v)
        r:feed("\1")
        ok, v = r:next()
        assert.is_nil(ok)
    end)

    it("refuses an object larger than max_size", function()
        local r = mp.reader({ max_size = 100 })
        r:feed(unhex("db00001000") .. string.rep("a", 50))
        assert.is_false(r:next())
        r:feed(string.rep("a", 60))
        local ok, err = r:next()
        assert.is_nil(ok)
        assert.is_truthy(err:find("larger than 100"), err)
        r = mp.reader({ max_size = 10 })
        r:feed(mp.encode(string.rep("z", 20)))
        ok, err = r:next()
        assert.is_nil(ok)
        assert.is_truthy(err:find("larger than 10"), err)
    end)
end)
