-- stats: counts of one queue.
-- KEYS[1] ready  KEYS[2] delayed  KEYS[3] leased  KEYS[4] dead
return {
  redis.call("ZCARD", KEYS[1]),
  redis.call("ZCARD", KEYS[2]),
  redis.call("ZCARD", KEYS[3]),
  redis.call("ZCARD", KEYS[4])
}
