-- conf/cluster.lua -- a local Moor cluster of 3 (default) or 5 nodes on one
-- machine: node nI listens on 127.0.0.I:770I, serves its metrics and status
-- page on http://127.0.0.I:778I/ and keeps its data in data/nI.
-- One file for every node (config as code): start each with
--   build/moord conf/cluster.lua --node n2 [--set size=5]
-- or all of them with `scripts/cluster.sh start [3|5]` from the repo root.

local size = tonumber(moor.arg.size or "3")
if size ~= 3 and size ~= 5 then
  error("conf/cluster.lua: --set size=3 or size=5, got " .. tostring(moor.arg.size), 0)
end

local members, seeds, http = {}, {}, {}
for i = 1, size do
  local addr = string.format("127.0.0.%d:%d", i, 7700 + i)
  members["n" .. i] = addr
  http["n" .. i] = string.format("127.0.0.%d:%d", i, 7780 + i)
  seeds[i] = addr -- every node lists every member; its own address is skipped
end

local me = moor.arg.node
if not members[me] then
  error(string.format("conf/cluster.lua: start with --node n1 .. n%d, got %s", size,
                      tostring(me)), 0)
end

moor.cfg{
  node = me,
  listen = members[me],
  http_listen = http[me],
  data_dir = "data/" .. me,
  seeds = seeds,
  -- Peers authenticate with it; clients can never call the "_" methods.
  -- Change it before the cluster leaves this machine.
  cluster_secret = "change-me",
  vnodes = 64,
  engine = { memtable_mb = 64, cache_mb = 128, sync = "interval", sync_ms = 10 },
  log = { level = "info" },
  plugins = { "resolvers.lww", "resolvers.set_union", "handlers.incr", "handlers.cas" },
}

-- Three copies of each key; reads and writes wait for two of them (R + W > N).
moor.space("default", { n = 3, r = 2, w = 2 })
-- Concurrent cart updates are merged (union of items) instead of kept as siblings.
moor.space("carts", { n = 3, r = 2, w = 2, resolver = "set_union" })
