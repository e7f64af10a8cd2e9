-- conf/autoscale.lua -- a local cluster that grows and shrinks by itself
-- (README "Automatic scaling").  Start the first three nodes from the repo
-- root:
--   build/moord conf/autoscale.lua --node n1 &   (n2, n3 likewise)
-- then drive load at it (build/moor -h 127.0.0.1:7701 bench --duration 120)
-- and watch `build/moor -h 127.0.0.1:7701 ring` and `... load`: past the
-- thresholds below for window_s, the evaluator (the lowest id that is up)
-- runs scripts/scaler.sh add, which starts n4 on 127.0.0.4:7704 with this
-- same file; after the load stops it runs scripts/scaler.sh remove, which
-- makes the newest node leave and stops it.  The scaler keeps its state in
-- data/scaler (`scripts/scaler.sh list`, `scripts/scaler.sh stop-all`).
--
-- The scaler starts new nodes as
--   moord conf/autoscale.lua --node nK --set listen=H:P --set data_dir=D --set seeds=A,B,C
-- so everything node-specific comes from moor.arg, with defaults for n1..n3.

local me = moor.arg.node or error("conf/autoscale.lua: start with --node n1 (n2, n3)", 0)
local i = tonumber(me:match("^n(%d+)$") or "")
local listen = moor.arg.listen or (i and string.format("127.0.0.%d:%d", i, 7700 + i))
if not listen then
  error("conf/autoscale.lua: node " .. me .. " needs --set listen=HOST:PORT", 0)
end

local seeds = {}
if moor.arg.seeds then
  for s in moor.arg.seeds:gmatch("[^,]+") do seeds[#seeds + 1] = s end
else
  for k = 1, 3 do seeds[k] = string.format("127.0.0.%d:%d", k, 7700 + k) end
end

moor.cfg{
  node = me,
  listen = listen,
  data_dir = moor.arg.data_dir or ("data/" .. me),
  seeds = seeds,
  cluster_secret = "change-me", -- every node of the cluster must share it
  engine = { memtable_mb = 16, cache_mb = 32, sync = "interval" },
  log = { level = "info" },
}

moor.space("default", { n = 3, r = 2, w = 2 })

moor.autoscale{
  check_s = 5,
  cooldown_s = 30,
  -- Over 10 ms p99 or 15000 requests/s per node for 30 s: one more node.
  -- Under 5 ms and 1000 requests/s per node for 30 s: one fewer, never below n = 3.
  policy = require("moor.autoscale").default{
    p99_ms = 10, rps_per_node = 15000, low_rps_per_node = 1000, window_s = 30, max_nodes = 8,
  },
  add = "scripts/scaler.sh add",
  remove = "scripts/scaler.sh remove",
}
