-- conf/node.lua -- one Moor node on 127.0.0.1:7700 with data under ./data,
-- a Redis-protocol port on 127.0.0.1:7379 (redis-cli -p 7379) and the
-- metrics and status page on http://127.0.0.1:7780/.
-- This file is Lua: it runs when moord starts (config as code).

moor.cfg{
  node = "n1",
  listen = "127.0.0.1:7700",
  resp_listen = "127.0.0.1:7379", -- not 6379: a local redis-server may hold it
  http_listen = "127.0.0.1:7780", -- /metrics, the status page at /, /status.json, /healthz
  data_dir = "data",
  engine = { memtable_mb = 64, cache_mb = 256, sync = "interval", sync_ms = 10 },
  log = { level = "info" },
  plugins = { "resolvers.lww", "resolvers.set_union", "handlers.incr", "handlers.cas" },
}

-- Keyspaces: the default one always exists; more can be declared.
moor.space("carts", { n = 1, r = 1, w = 1, resolver = "set_union" })

-- A server-side handler: runs in a coroutine, yields while it waits.
moor.handle("hello", function(name)
  return "hello, " .. tostring(name or "world")
end)
