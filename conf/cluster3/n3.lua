-- conf/cluster3/n3.lua -- node n3 of a 3-node Moor cluster on one machine
-- (127.0.0.1 .. 127.0.0.3, ports 7701 .. 7703). Start them all with
-- `scripts/cluster.sh start 3` from the repo root; data goes under ./data/n3.

moor.cfg{
  node = "n3",
  listen = "127.0.0.3:7703",
  data_dir = "data/n3",
  -- Every node lists every member; its own address among them is ignored.
  seeds = { "127.0.0.1:7701", "127.0.0.2:7702", "127.0.0.3:7703" },
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
