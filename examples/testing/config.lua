-- examples/testing/config.lua -- a config with a resolver and a handler,
-- written so that moor.testing can start it as one node or as a cluster
-- (example_spec.lua beside it is the spec to copy for your own).
--
-- moor.testing hands each node its id, address and data directory as
-- moor.arg.node, moor.arg.listen and moor.arg.data_dir (moord --node /
-- --set), and in a cluster every member's address as moor.arg.seeds
-- ("host:port,host:port,...") and moor.arg.cluster_secret.  Run by hand
-- it falls back to one node on 127.0.0.1:7700:
--   build/moord examples/testing/config.lua

local seeds = {}
for addr in (moor.arg.seeds or ""):gmatch("[^,]+") do
  seeds[#seeds + 1] = addr
end

moor.cfg{
  node = moor.arg.node or "n1",
  listen = moor.arg.listen or "127.0.0.1:7700",
  data_dir = moor.arg.data_dir or "data",
  seeds = moor.arg.seeds and seeds or nil,
  cluster_secret = moor.arg.cluster_secret,
  plugins = { "resolvers.set_union" },
}

-- Concurrent scores of one player merge into the highest.  The third
-- argument tells `moord --check` (and moor.testing's T.laws) what values
-- to try the resolver's laws on: this space holds numbers.
moor.resolver("max", function(siblings)
  local best
  for _, s in ipairs(siblings) do
    if not s.tombstone and (best == nil or s.value > best) then
      best = s.value
    end
  end
  return best -- nil (every sibling a delete): the key stays deleted
end, { values = "number" })

moor.space("scores", { resolver = "max" })
moor.space("tags", { resolver = "set_union" })

-- record(player, score) -> the player's best score, which it keeps.
moor.handle("record", function(player, score)
  if type(score) ~= "number" then
    error("record: score must be a number, got " .. type(score), 0)
  end
  local cur, err = moor.get(player, { space = "scores" })
  if err then
    error(err, 0)
  end
  local best = cur and cur.values[1]
  if best == nil or score > best then
    local ok, perr = moor.put(player, score, { space = "scores", ctx = cur and cur.ctx })
    if not ok then
      error(perr, 0)
    end
    best = score
  end
  return best
end)
