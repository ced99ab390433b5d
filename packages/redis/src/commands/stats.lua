-- stats: counts of one queue (running: leased as hashes and in the fast lane).
-- KEYS[1] ready  KEYS[2] delayed  KEYS[3] leased  KEYS[4] dead  KEYS[5] fastLease
return {
  redis.call("ZCARD", KEYS[1]),
  redis.call("ZCARD", KEYS[2]),
  redis.call("ZCARD", KEYS[3]) + redis.call("HLEN", KEYS[5]),
  redis.call("ZCARD", KEYS[4])
}
