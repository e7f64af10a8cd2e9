-- examples/testing/example_spec.lua -- a spec for a config's resolver and
-- handler with moor.testing: copy it next to your own config, change
-- CONFIG and the expectations, and run
--   busted --lua=luajit example_spec.lua
-- (moord found through env MOOR_MOORD, else on PATH; `make test` runs this
-- one as the ctest example_spec against the build's moord).
--
-- What it shows: start a node from the config in a scratch directory,
-- call a handler, write concurrent siblings on purpose and see the
-- resolver merge them, check the resolver's laws (here in busted, and as
-- moord --check does), and a cluster of three on 127.0.0.1..3.
-- teardown(T.stop_all) stops every moord the kit started, whatever failed.

local T = require("moor.testing")

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local CONFIG = here .. "/config.lua"

describe("the example config on one node", function()
  local node

  setup(function()
    node = T.node{ config = CONFIG }
  end)
  teardown(T.stop_all)

  it("record keeps a player's best score", function()
    assert.same(5, node:call("record", "ann", 5))
    assert.same(9, node:call("record", "ann", 9))
    assert.same(9, node:call("record", "ann", 7))
    local _, err = node:call("record", "ann", "lots")
    assert.truthy(err and err:find("HANDLER_ERROR: .*score must be a number"), err)
  end)

  it("merges concurrent scores into the highest", function()
    local r = T.siblings(node, "scores", "bob", { 3, 11, 4 })
    assert.same({ 11 }, r.values)
    -- the merge was written back: the key holds one value now
    assert.same({ 11 }, node:get("bob", { space = "scores" }).values)
  end)

  it("merges concurrent tag sets into their union", function()
    local r = T.siblings(node, "tags", "post", { { "lua" }, { "kv", "lua" }, { "dynamo" } })
    assert.same({ { "dynamo", "kv", "lua" } }, r.values)
  end)

  it("keeps siblings where no resolver merges them", function()
    local r = T.siblings(node, nil, "plain", { "x", "y" })
    table.sort(r.values)
    assert.same({ "x", "y" }, r.values)
  end)

  it("keeps its data over a restart", function()
    node:restart()
    assert.same({ 9 }, node:get("ann", { space = "scores" }).values)
  end)

  it("max obeys the resolver laws", function()
    -- here, with the check options the config gave moor.resolver
    T.laws("max", { config = CONFIG })
    -- and as the node runs it (moord --check, in its sandbox)
    T.laws("max", { node = node })
  end)
end)

describe("the example config on a cluster of three", function()
  teardown(T.stop_all)

  it("merges scores written through different nodes", function()
    local c = T.cluster{ size = 3, config = CONFIG }
    local r = T.siblings(c, "scores", "cat", { 7, 2, 12 })
    assert.same({ 12 }, r.values)
    assert.same(12, c:node(2):call("record", "cat", 1))
    c:stop()
  end)
end)
