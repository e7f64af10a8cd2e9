--[[
resolvers.counter -- siblings are PN-counters; the resolved value is their
merge, so no increment or decrement made anywhere is lost.

Enable with plugins = {"resolvers.counter"} and name it in a space:
moor.space("likes", {resolver = "counter"}).  Write values with the
helpers of moor.counter, one id per concurrent writer:

    local counter = require("moor.counter")
    local cur = moor.get(key)                -- cur.values: the siblings
    local c = counter.merge(unpack(cur and cur.values or {}))
    moor.put(key, counter.incr(c, "client-7", 1), {ctx = cur and cur.ctx})

A value is {p = {[id] = count}, n = {[id] = count}} (value sum(p) -
sum(n)); a plain integer x counts as {p = {_ = x}} (or {n = {_ = -x}}
when negative).  The full representation, and why an id must not be
incremented from two places at once, are in lua/moor/counter.lua.

Input: the siblings of a key, { {value = ..., ts = ..., tombstone = ...}, ... }.
Output: the merged counter {p = {...}, n = {...}} (per id, the larger count
of p and of n; zero counts dropped), or nil when every sibling is a
tombstone.  Tombstones contribute nothing (add wins over a concurrent
delete).  The merge is commutative, associative and idempotent, so the
result does not depend on sibling order and resolving it again changes
nothing.  A malformed value raises "counter: sibling <i> ...", which
leaves the siblings in place and is logged by the node.

Pure function of its input: no I/O, no globals, safe in the sandbox.
]]

return require("moor.counter").resolve
