-- stats: counts of one queue (ready: in the ready set and the list; running:
-- leased as hashes and in the fast lane; the fast leases' hash holds a pin,
-- see common.lua).
-- KEYS[1] ready  KEYS[2] delayed  KEYS[3] leased  KEYS[4] dead  KEYS[5] fastLease
-- KEYS[6] fifo
return {
  redis.call("ZCARD", KEYS[1]) + redis.call("LLEN", KEYS[6]),
  redis.call("ZCARD", KEYS[2]),
  redis.call("ZCARD", KEYS[3]) + redis.call("HLEN", KEYS[5]) - redis.call("HEXISTS", KEYS[5], "\n"),
  redis.call("ZCARD", KEYS[4])
}
